"""One training loop for every model of the project.

AdamW or RAdam, cosine schedule with warmup or step decay, gradient accumulation, mixed precision from the hardware
(bf16 where native, fp16 with loss scaling on older GPUs, fp32 on CPU), data-parallel processes, early stopping on validation weighted F1 of cat3, the best checkpoint kept, history per epoch.
A run writes into its own folder: `last.pt` after every epoch (an interrupted run resumes from it),
`best.pt`, and `result.json` when done; a finished run with the same configuration is not retrained.
Imbalance options: class-weighted loss, over-/under-sampling, mixup. `fit` reads one `config.Schedule`, resolved
from the run's configuration; its parts are the methods of `_Fit`. The data is a `features.TensorData` (cached
tensors) or a `rows.RawRows` (rows decoded per batch): one interface, `loader`, `labels_of`, `for_training`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from . import distributed
from .config import Schedule
from .inputs import to_device
from .io import DamagedFile, atomic_path, load_torch, read_json, write_json
from .metrics import weighted_f1
from .models import encoder_layer_lrs, pretrained_parameters
from .progress import bar as progress_bar
from .runtime import announce_precision, autocast, choose_precision, pick_device
from .taxonomy import LEVELS


class TrainingDiverged(FloatingPointError):
    """The loss was NaN or infinite in most batches of an epoch: what follows would train on garbage (under fp16
    the GradScaler would skip every step without a word)."""


class TimeBudgetExceeded(RuntimeError):
    """Training stopped cleanly before the session's time budget ran out; rerunning the same command continues
    from the checkpoint it saved."""


class TimeBudget:
    """A wall-clock budget (`time_budget_hours`; 0: none) counted from its creation: `allows(seconds)` says
    whether that much work still fits."""

    def __init__(self, hours: float = 0.0):
        self.hours = hours
        self.deadline = time.time() + hours * 3600 if hours > 0 else None

    def allows(self, seconds: float) -> bool:
        return self.deadline is None or time.time() + seconds < self.deadline


_SESSION = {"budget": None}


def set_session_budget(budget: "TimeBudget | None") -> None:
    """The notebook's time budget (`run.start` sets it from `time_budget_hours`): every fit of the notebook
    process stops cleanly before it runs out, not only 06's K-fold units."""
    _SESSION["budget"] = budget


def session_budget() -> "TimeBudget | None":
    budget = _SESSION["budget"]
    return budget if budget is not None and budget.hours else None


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    best_score: float
    best_epoch: int
    seconds: float
    resumed: bool = False
    skipped: bool = False
    val_probs: dict | None = None  # the best epoch's validation pass, when this call ran it (the weights of best.pt)


def soft_targets(batch: dict, level: str, n_classes: int) -> torch.Tensor:
    """Per item of a batch: its soft target where it has one (`soft`), else the one-hot of its label."""
    hard = nn.functional.one_hot(batch[level].clamp(min=0), n_classes).float()
    return torch.where(batch["soft"][:, None], batch[f"soft_{level}"].float(), hard)


def _trainable_keys(model: nn.Module) -> set[str]:
    """The state-dict keys training changes: trainable parameters and the buffers of the modules that own them."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    owners = {n.rsplit(".", 1)[0] for n in trainable}
    return {k for k in model.state_dict() if k in trainable or k.rsplit(".", 1)[0] in owners}


def _trainable_state(model: nn.Module) -> dict:
    """Only what training changes: checkpoints stay small."""
    keys = _trainable_keys(model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keys}


def load_checkpoint(model: nn.Module, path, partial: bool = False, state: dict | None = None) -> nn.Module:
    """Load a checkpoint written by `fit`, strictly: every tensor must exist in `model` with the same shape, and
    (unless `partial`: a fine-tune starting from its frozen model's head) every trainable tensor of `model` must
    be in it. A checkpoint made for another configuration fails loudly, naming the file and the tensors."""
    try:
        state = load_torch(path) if state is None else state  # `state`: already read from `path`
    except DamagedFile as exc:
        raise RuntimeError(f"{exc}. Delete it and rerun the notebook that trains it (it retrains that model)") from None
    own = model.state_dict()
    problems = [f"{k}: not in this model" for k in state if k not in own]
    problems += [f"{k}: shape {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
    if not partial:
        problems += [f"{k}: missing from the file" for k in sorted(_trainable_keys(model)) if k not in state]
    if problems:
        listed = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        raise RuntimeError(f"{path}: checkpoint does not fit the model ({listed}). It was trained under another "
                           f"configuration: rerun the notebook that trains it")
    model.load_state_dict({**own, **state})
    return model


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse class frequency over the labelled rows (distillation's test rows carry -1 and soft targets)."""
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(np.clip(weights, 0.05, 20.0), dtype=torch.float32)


def epoch_indices(labels: np.ndarray, sampling: str, rng: np.random.Generator) -> np.ndarray:
    """Positions (into the training rows) drawn for one epoch under the sampling option ("": a permutation)."""
    n = len(labels)
    if not sampling:
        return rng.permutation(n)
    counts = np.bincount(labels[labels >= 0])  # distillation's test rows (-1) are drawn as a class of their own
    if sampling == "over":
        p = 1.0 / np.sqrt(np.where(labels >= 0, counts[np.maximum(labels, 0)], max(1, int(np.sum(labels < 0)))))
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    if sampling == "under":
        cap = int(np.median(counts[counts > 0]))
        keep = [rng.permutation(np.flatnonzero(labels == c))[:cap] for c in np.unique(labels)]
        return rng.permutation(np.concatenate(keep))
    raise ValueError(f"sampling must be '', 'over' or 'under', not {sampling!r}")


def batches(data: Dataset, indices, batch_size: int, device: str = "cpu", rank: int = 0, world: int = 1,
            epoch: int = 0):
    """Batches of the given rows, in order (`data.loader`: cached tensors sliced, raw rows decoded in workers).
    Data-parallel (`world` processes): this process's share of each batch, its rows rank, rank + world, ...
    `epoch` seeds raw rows' augmentation (with the row), so a resumed epoch draws what it drew before."""
    indices = np.asarray(indices)
    groups = [indices[start:start + batch_size][rank::world] for start in range(0, len(indices), batch_size)]
    yield from data.loader(groups, device, epoch)


def _mix(batch: dict, alpha: float, rng: np.random.Generator, whole: int | None = None):
    """Mixup of a batch with a shuffled copy of itself. `whole`: the rows of the whole batch where this process
    holds a share of it (data-parallel): every process then draws as many numbers, whatever its share, so that
    their generators, which also draw the epochs' orders, stay together."""
    lam = float(rng.beta(alpha, alpha))
    n = len(batch["cat3"])
    perm = torch.from_numpy(rng.permutation(n) if whole is None else np.argsort(rng.random(whole)[:n]))
    mixed = dict(batch)
    for key, value in batch.items():
        if torch.is_tensor(value) and value.is_floating_point():
            mixed[key] = lam * value + (1 - lam) * value[perm]
        elif key.endswith("mask"):
            mixed[key] = value | value[perm]
    return mixed, perm, lam


def predict(model: nn.Module, data: Dataset, indices=None, batch_size: int = 256, device: str = "auto",
            desc: str = "predicting", precision: str = "auto") -> dict[str, np.ndarray]:
    """Softmax probabilities per level for the given rows, in their order."""
    device = pick_device(device)
    precision = choose_precision(device, precision)
    indices = np.arange(len(data)) if indices is None else np.asarray(indices)
    loader = batches(data, indices, batch_size, device)
    home = next(model.parameters()).device  # where it goes back to: a fitted model waits on the CPU (`release`)
    model.to(device).eval()
    out = {level: [] for level in LEVELS}
    with torch.inference_mode(), autocast(device, precision):
        for batch in progress_bar(loader, desc, int(np.ceil(len(indices) / batch_size)), inner=True):
            logits = model(to_device(batch, device))
            for level in LEVELS:
                out[level].append(logits[level].float().softmax(-1).cpu().numpy())
    if home != next(model.parameters()).device:
        release(model, home)
    return {level: np.concatenate(v) for level, v in out.items()}


def _scheduler(optimizer, s: Schedule, steps_per_epoch: int, epochs: int):
    """Stepped once per optimiser step: cosine decay after a linear warmup, or (9th place) halved every 10 epochs."""
    if s.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10 * max(1, steps_per_epoch), gamma=0.5)
    from transformers import get_cosine_schedule_with_warmup

    total = max(1, steps_per_epoch * epochs)
    return get_cosine_schedule_with_warmup(optimizer, int(s.warmup_ratio * total), total)


def _loss(logits: dict, batch: dict, losses: dict, weights: dict, perm, lam: float,
          distill_weight: float = 0.0) -> torch.Tensor:
    """The levels' weighted cross-entropies; soft targets where distillation gives them, mixed under mixup. With
    `distill_weight` > 0 (9th place: 0.3), the soft-target rows' mean counts that much beside the others' mean."""
    soft = batch.get("soft")
    if distill_weight > 0 and soft is not None and soft.any() and not soft.all():
        return (_loss(*_rows(logits, batch, ~soft), losses, weights, None, 1.0)
                + distill_weight * _loss(*_rows(logits, batch, soft), losses, weights, None, 1.0))
    loss = 0.0
    for level in LEVELS:
        target = batch[level]
        if soft is not None:  # distillation: soft targets for some rows (cross-entropy takes probabilities)
            target = soft_targets(batch, level, logits[level].shape[-1])
        level_loss = losses[level](logits[level].float(), target)
        if perm is not None:
            level_loss = lam * level_loss + (1 - lam) * losses[level](logits[level].float(), target[perm.to(target.device)])
        loss = loss + weights[level] * level_loss
    return loss


def _rows(logits: dict, batch: dict, rows) -> tuple[dict, dict]:
    """The logits and batch entries of some rows of a batch."""
    pick = lambda d: {k: v[rows] if torch.is_tensor(v) and v.dim() > 0 and len(v) == len(rows) else v
                      for k, v in d.items()}
    return pick(logits), pick(batch)


def gradient_sync(ddp, optimiser_step: bool):
    """Data-parallel processes average gradients only on a micro-batch that ends an optimiser step: the others
    accumulate locally (`no_sync`), one all-reduce per step instead of one per micro-batch."""
    return contextlib.nullcontext() if ddp is None or optimiser_step else ddp.no_sync()


def resume_scaler(scaler, state: dict) -> None:
    """A checkpoint written under bf16 or fp32 (A100, L4, CPU) has an empty loss-scaler state: resumed under fp16
    (Colab's next session on a T4) the scaler starts afresh instead of refusing; one written under fp16 and
    resumed without loss scaling leaves it off."""
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)


def rng_states() -> dict:
    """Torch's random states, the GPU's this process draws on too (dropout and modality dropout draw there): a
    resumed run is the same run, also where a K-fold unit resumes in a worker on another GPU."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return {"torch_rng": torch.get_rng_state(), "cuda_rng": cuda}


def set_rng_states(state: dict) -> None:
    """The states of `rng_states`, the GPU's to the GPU this process draws on (a checkpoint that holds every
    GPU's, as older ones do, gives it the one it was on: this process's device index)."""
    torch.set_rng_state(state["torch_rng"])
    cuda = state.get("cuda_rng")
    if isinstance(cuda, (list, tuple)):
        cuda = cuda[torch.cuda.current_device()] if torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count() else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


def release(model: nn.Module, home="cpu") -> None:
    """A model lives on the GPU only while it trains or predicts: back on the CPU, with the cached blocks freed, so
    that the next fit (or process 0 of a data-parallel group on the same GPU) has the card to itself."""
    model.to(home)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _readable(path: Path, name: str, load):
    """`load(path)`, or None when it does not exist or is damaged (named, then set aside: the work it held is
    done again rather than loaded into a wrong answer)."""
    if not path.exists():
        return None
    try:
        return load(path)
    except DamagedFile as exc:
        print(f"{name}: {exc}; set aside as {path.name}.damaged, training again from what is intact")
        path.replace(path.with_name(path.name + ".damaged"))
        return None


def _finished(run_dir: Path, key: str, model: nn.Module, name: str) -> dict | None:
    """The result of a finished fit of this configuration, its best weights loaded into `model`; None when there is
    none, or its result.json or best.pt is damaged (then it trains again)."""
    done = _readable(run_dir / "result.json", name, read_json)
    if not done or done.get("config_hash") != key:
        return None
    state = _readable(run_dir / "best.pt", name, load_torch)
    if state is None:
        return None
    load_checkpoint(model, run_dir / "best.pt", state=state)
    return done


@dataclass
class _Progress:
    """Where a fit stands: what `last.pt` keeps besides the weights, the optimiser and the random states."""

    history: list = field(default_factory=list)
    best: float = -1.0
    best_loss: float = float("inf")  # the best epoch's validation loss: breaks a tie in F1 (a majority-class plateau)
    best_epoch: int = -1
    epoch: int = 0  # the next epoch to run
    seconds: float = 0.0
    resumed: bool = False
    within: dict | None = None  # where an epoch stopped part-way: {"epoch", "step", "rng_now", "total_loss", ...}
    best_probs: dict | None = None  # the best epoch's validation probabilities, if that epoch ran in this call


def _optimizer(model: nn.Module, params: list, s: Schedule):
    """AdamW or RAdam; new layers at `lr`, pretrained encoder layers at `encoder_lr` with layer-wise decay."""
    pretrained = pretrained_parameters(model)
    encoder_lr = s.encoder_lr or s.lr
    groups = [{"params": [p for p in params if id(p) not in pretrained], "lr": s.lr}]
    layer_lr = encoder_layer_lrs(model, encoder_lr, s.layer_decay)
    for lr in sorted({layer_lr.get(id(p), encoder_lr) for p in params if id(p) in pretrained}):
        groups.append({"params": [p for p in params if id(p) in pretrained
                                  and layer_lr.get(id(p), encoder_lr) == lr], "lr": lr})
    return (torch.optim.RAdam if s.optimizer == "radam" else torch.optim.AdamW)(groups, weight_decay=s.weight_decay)


def _epoch_sizes(n_train: int, s: Schedule) -> tuple[int, int, int]:
    """Rows drawn per epoch, optimiser steps per epoch, and epochs (more on a small dataset, for `min_steps`)."""
    rows = n_train if not s.steps_per_epoch else min(n_train, s.steps_per_epoch * s.batch_size * s.grad_accum)
    steps = int(np.ceil(rows / s.batch_size / s.grad_accum))
    return rows, steps, max(s.epochs, int(np.ceil(s.min_steps / max(1, steps))))


def _losses(model: nn.Module, labels: dict, s: Schedule, device: str) -> dict:
    """Cross-entropy per level, class-weighted under `class_weight=balanced`."""
    return {level: nn.CrossEntropyLoss(weight=(_class_weights(labels[level], model.heads.heads[level].out_features)
                                               .to(device) if s.class_weight == "balanced" else None))
            for level in LEVELS}


def _data_parallel(model: nn.Module, world: int, device: str):
    """The DistributedDataParallel wrapper of a data-parallel fit (None for one process)."""
    if world == 1:
        return None
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
                                   gradient_as_bucket_view=True)  # no second copy of the gradients


class _Fit:
    """One call of `fit`: its settings and the named parts of the loop (prepare, resume, train an epoch, one
    step, checkpoint or stop, validate, finish)."""

    def __init__(self, model, data, train_idx, val_idx, s: Schedule, run_dir, name, verbose, budget, minutes):
        self.model, self.data, self.s, self.name, self.minutes = model, data, s, name, minutes
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.rank, self.world = distributed.world()  # data-parallel: process `rank` of `world`
        self.main = self.rank == 0                   # the one that prints and writes
        self.verbose = verbose and self.main
        self.device = pick_device(s.device)
        self.precision = choose_precision(self.device, s.precision)
        self.budget = budget if budget is not None else session_budget()
        self.train_idx, self.val_idx = np.asarray(train_idx), np.asarray(val_idx)
        self.progress = _Progress()

    def identify(self, identity: dict) -> None:
        """What defines this fit (`described`, written to result.json) and its key: the schedule, the model, the
        rows, their labels (corrected labels mean a new fit), the soft targets, the augmented copies, and the
        caller's `identity` (kind, taxonomy, starting weights); in the key also which weights train (a model of
        the same layers that trains others is another fit: its checkpoints hold other weights and moments)."""
        labels = b"".join(self.data.labels_of(idx, level).tobytes()
                          for idx in (self.train_idx, self.val_idx) for level in LEVELS)
        soft, copies = self.data.soft_digest, self.data.copies_digest
        self.described = {"schedule": asdict(self.s), "identity": {
            **identity, "train_rows": hashlib.sha1(self.train_idx.tobytes()).hexdigest()[:12],
            "val_rows": hashlib.sha1(self.val_idx.tobytes()).hexdigest()[:12],
            "labels": hashlib.sha1(labels).hexdigest()[:12], **({"soft_targets": soft} if soft else {}),
            **({"augmented_copies": copies} if copies else {})}}
        trained = " ".join(name for name, p in self.model.named_parameters() if p.requires_grad)
        self.key = hashlib.sha1(json.dumps({**self.described, "model": repr(self.model), "trained": trained},
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]

    def prepare(self) -> None:
        """Seeds, optimiser and schedule, losses, the data-parallel wrapper and the loss scaler."""
        s = self.s
        torch.manual_seed(s.seed)
        self.rng = np.random.default_rng(s.seed)
        self.model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = _optimizer(self.model, self.params, s)
        self.labels = {level: self.data.labels_of(self.train_idx, level) for level in LEVELS}
        self.rows_per_epoch, steps_per_epoch, self.epochs = _epoch_sizes(len(self.train_idx), s)
        self.scheduler = _scheduler(self.optimizer, s, steps_per_epoch, self.epochs)
        self.losses = _losses(self.model, self.labels, s, self.device)
        self.ddp = _data_parallel(self.model, self.world, self.device)
        self.step_model = self.ddp or self.model
        self.scaler = torch.amp.GradScaler(torch.device(self.device).type, enabled=self.precision == "fp16")
        self.weights = dict(zip(LEVELS, s.loss_weights))

    def resume(self) -> None:
        """Continue from `last.pt` when it was written by this configuration (mid-epoch included)."""
        state = _readable(self.run_dir / "last.pt", self.name, lambda p: load_torch(p, weights_only=False, mmap=True))
        if state is None or state.get("config_hash") != self.key:
            return
        self.model.load_state_dict({**self.model.state_dict(), **state["model"]})
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        resume_scaler(self.scaler, state["scaler"])
        self.rng.bit_generator.state = state["rng"]
        set_rng_states(state)
        self.progress = _Progress(state["history"], state["best"], state.get("best_loss", float("inf")),
                                  state["best_epoch"], state["epoch"] + 1, state["seconds"], True, state.get("within"))
        if self.verbose:
            within = self.progress.within
            where = f", step {within['step'] + 1}" if within else ""
            print(f"{self.name}: resuming from epoch {self.progress.epoch + 1}{where} ({self.run_dir / 'last.pt'})")

    def save_last(self, epoch_done: int, rng_state, part=None, elapsed: float = 0.0) -> None:
        if not self.main:
            return
        p = self.progress
        with atomic_path(self.run_dir / "last.pt") as tmp:
            torch.save({"config_hash": self.key, "model": _trainable_state(self.model),
                        "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "scaler": self.scaler.state_dict(), "rng": rng_state, **rng_states(), "history": p.history,
                        "best": p.best, "best_loss": p.best_loss, "best_epoch": p.best_epoch, "epoch": epoch_done,
                        "seconds": p.seconds + elapsed, "within": part}, tmp)

    def train(self) -> None:
        """Epochs until the last, or until `patience` epochs without a better validation F1."""
        for epoch in range(self.progress.epoch, self.epochs):
            if self.progress.best_epoch >= 0 and epoch - self.progress.best_epoch > self.s.patience:
                break
            t0 = time.time()
            totals = self.train_epoch(epoch, t0)
            self.validate(epoch, t0, totals)

    def train_epoch(self, epoch: int, t0: float) -> list:
        """One epoch's optimiser steps (from where a mid-epoch stop left it); returns loss sum, rows, correct."""
        s, p = self.s, self.progress
        self.model.train()
        epoch_rng = self.rng.bit_generator.state  # a mid-epoch resume redraws this epoch's order from here
        order = self.train_idx[epoch_indices(self.labels["cat3"], s.sampling, self.rng)][:self.rows_per_epoch]
        if 0 < len(order) % s.batch_size < self.world:  # every process needs a row of the last batch
            order = order[:len(order) - len(order) % s.batch_size]
        n_batches = int(np.ceil(len(order) / s.batch_size))
        totals, first, bad = [0.0, 0, 0], 0, 0
        if p.within is not None and p.within["epoch"] == epoch:
            first, totals = p.within["step"], [p.within["total_loss"], p.within["seen"], p.within["correct"]]
            self.rng.bit_generator.state = p.within["rng_now"]
        p.within, clock = None, {"saved": time.time(), "started": time.time()}
        self.optimizer.zero_grad(set_to_none=True)
        bar = progress_bar(batches(self.data, order[first * s.batch_size:], s.batch_size, self.device, self.rank,
                                   self.world, epoch),
                           f"{self.name} epoch {epoch + 1}/{self.epochs}", n_batches, inner=True, initial=first,
                           disable=not self.main)
        for step, batch in enumerate(bar, start=first):
            if step > first and step % s.grad_accum == 0:  # between optimiser steps: a clean place to stop
                self.checkpoint_or_stop(epoch, step, first, n_batches, epoch_rng, totals, clock, t0)
            loss, logits, batch = self.step(batch, step, n_batches, order)
            value = float(loss.detach())
            if not np.isfinite(value):
                bad += 1
                continue
            totals[0] += value * len(batch["cat3"])
            totals[1] += len(batch["cat3"])
            totals[2] += int((logits["cat3"].argmax(-1) == batch["cat3"]).sum())  # soft-target rows never count
            bar.set_postfix(loss=f"{totals[0] / totals[1]:.3f}")
        *totals, bad, steps = distributed.total([*totals, bad, n_batches - first])
        if bad > steps / 2:
            other = " or train in fp32 (--set precision=fp32)" if self.precision != "fp32" else ""
            raise TrainingDiverged(f"{self.name}: the loss was NaN or infinite in {bad:.0f} of {steps:.0f} batches of "
                                   f"epoch {epoch + 1} ({self.precision}): training has diverged. Lower the learning "
                                   f"rate (lr, encoder_lr){other} and run again")
        return totals

    def checkpoint_or_stop(self, epoch, step, first, n_batches, epoch_rng, totals, clock, t0) -> None:
        """`last.pt` every `checkpoint_minutes` within an epoch; saved, then TimeBudgetExceeded, when two more
        optimiser steps no longer fit the time budget."""
        mean_step = (time.time() - clock["started"]) / (step - first)
        late = self.minutes and time.time() - clock["saved"] > self.minutes * 60
        stop = self.budget is not None and not self.budget.allows(2 * mean_step * self.s.grad_accum)
        if self.budget is not None or self.minutes:
            late, stop = distributed.agree(late), distributed.agree(stop)
        if not (late or stop):
            return
        self.save_last(epoch - 1, epoch_rng, {"epoch": epoch, "step": step, "rng_now": self.rng.bit_generator.state,
                                              "total_loss": totals[0], "seen": totals[1], "correct": totals[2]},
                       time.time() - t0)
        clock["saved"] = time.time()
        if stop:
            raise TimeBudgetExceeded(f"{self.name}: stopped at epoch {epoch + 1}, step {step + 1} of {n_batches} "
                                     f"before the {self.budget.hours} h time budget ran out; saved "
                                     f"{self.run_dir / 'last.pt'}")

    def step(self, batch: dict, step: int, n_batches: int, order: np.ndarray):
        """One micro-batch: forward under the run's precision, scaled backward (gradients averaged over the
        data-parallel processes only on a micro-batch that ends an optimiser step), and the optimiser step."""
        s = self.s
        batch = to_device(batch, self.device)
        whole = None  # data-parallel: the rows of the whole batch, over every process
        if self.world > 1:
            whole = len(order[step * s.batch_size:(step + 1) * s.batch_size])
        perm, lam = None, 1.0
        if s.mixup > 0:
            batch, perm, lam = _mix(batch, s.mixup, self.rng, whole)
        optimiser_step = (step + 1) % s.grad_accum == 0 or step + 1 == n_batches
        with gradient_sync(self.ddp, optimiser_step):
            with autocast(self.device, self.precision):
                logits = self.step_model(batch)
                loss = _loss(logits, batch, self.losses, self.weights, perm, lam, s.distill_weight)
            share = 1.0
            if whole is not None:  # DDP averages gradients over processes: weigh each by its share of the batch's rows
                share = len(batch["cat3"]) * self.world / whole
            self.scaler.scale(loss * share / s.grad_accum).backward()
        if optimiser_step:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip)
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skipped when fp16 overflowed; the scale then shrinks
            self.scaler.update()
            if self.scaler.get_scale() >= scale:  # the learning rate follows the steps taken, not those skipped
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss, logits, batch

    def validate(self, epoch: int, t0: float, totals) -> None:
        """Weighted F1 of cat3 on the validation rows; the best epoch's weights kept in best.pt."""
        p = self.progress
        total_loss, seen, correct = totals
        probs = distributed.gather_rows(predict(self.model, self.data, self.val_idx[self.rank::self.world],
                                                device=self.s.device, desc="validating", precision=self.precision))
        y_val = self.data.labels_of(self.val_idx)
        val_loss = float(np.mean(-np.log(probs["cat3"][np.arange(len(self.val_idx)), y_val] + 1e-9)))
        score = weighted_f1(y_val, probs["cat3"].argmax(1))
        p.seconds += time.time() - t0
        record = {"epoch": epoch + 1, "train_loss": total_loss / seen, "train_accuracy_cat3": correct / seen,
                  "val_loss_cat3": val_loss, "val_accuracy_cat3": float((probs["cat3"].argmax(1) == y_val).mean()),
                  "val_weighted_f1_cat3": score, "seconds": time.time() - t0}
        p.history.append(record)
        improved = score > p.best or (score == p.best and val_loss < p.best_loss)
        if improved:
            p.best, p.best_loss, p.best_epoch, p.best_probs = score, val_loss, epoch, probs
            if self.main:
                with atomic_path(self.run_dir / "best.pt") as tmp:
                    torch.save(_trainable_state(self.model), tmp)
        self.save_last(epoch, self.rng.bit_generator.state)
        if self.verbose:
            print(f"{self.name} epoch {epoch + 1:>2}/{self.epochs}: train loss {record['train_loss']:.3f} "
                  f"acc {record['train_accuracy_cat3']:.3f} | val loss {val_loss:.3f} "
                  f"weighted F1 {score:.4f}{' *' if improved else ''} ({record['seconds']:.1f}s)")

    def finish(self) -> FitResult:
        """The best weights loaded into the model, which waits on the CPU; result.json written, last.pt gone."""
        p = self.progress
        distributed.barrier()  # process 0 has written best.pt
        del self.optimizer, self.scheduler, self.scaler, self.step_model, self.ddp  # AdamW's moments: free them now
        release(self.model)
        load_checkpoint(self.model, self.run_dir / "best.pt")
        if self.main:
            write_json({"config_hash": self.key, "history": p.history, "best_score": p.best, "best_epoch": p.best_epoch,
                        "seconds": p.seconds, "config": self.described}, self.run_dir / "result.json")
            (self.run_dir / "last.pt").unlink(missing_ok=True)
        distributed.barrier()
        return FitResult(self.model, p.history, p.best, p.best_epoch, p.seconds, resumed=p.resumed,
                         val_probs=p.best_probs)


def fit(model: nn.Module, data: Dataset, train_idx, val_idx, schedule: Schedule, run_dir, name: str = "model",
        identity: dict | None = None, verbose: bool = True, budget: TimeBudget | None = None,
        checkpoint_minutes: float = 0.0) -> FitResult:
    """Train `model` on rows `train_idx` of `data` as `schedule` says (`Config.schedule`), early-stopping on
    weighted F1 of cat3 on `val_idx`. `identity`: what else defines the fit (kind, taxonomy, starting weights).

    A finished fit of the same configuration is loaded, not retrained. `last.pt` is written after every epoch and,
    with `checkpoint_minutes`, every that many minutes within one (long epochs on a session that may disconnect);
    a rerun resumes from it, mid-epoch included, with the same batches and random draws as an uninterrupted run.
    `budget`: before each optimiser step, if twice the mean step time no longer fits, save `last.pt` and raise
    TimeBudgetExceeded."""
    run = _Fit(model, data, train_idx, val_idx, schedule, run_dir, name, verbose, budget, checkpoint_minutes)
    if run.main:
        announce_precision(run.device, run.precision)
    run.identify(identity or {})
    done = _finished(run.run_dir, run.key, model, name)
    if done:
        if run.verbose:
            print(f"{name}: already trained with this configuration ({run.run_dir}); loaded its best checkpoint")
        return FitResult(model, done["history"], done["best_score"], done["best_epoch"], done["seconds"], skipped=True)
    run.prepare()
    run.resume()
    run.train()
    return run.finish()
