"""One training loop for every model of the project.

AdamW, cosine schedule with warmup, gradient accumulation, mixed precision from the hardware (bf16 where native,
fp16 with loss scaling on older GPUs, fp32 on CPU), torch.compile on a GPU,
early stopping on validation weighted F1 of cat3, the best checkpoint kept, history per epoch.
A run writes into its own folder: `last.pt` after every epoch (an interrupted run resumes from it),
`best.pt`, and `result.json` when done; a finished run with the same configuration is not retrained.
Imbalance options: class-weighted loss, over-/under-sampling, mixup.
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
from torch.utils.data import DataLoader, Dataset

from .io import DamagedFile, atomic_path, load_torch, read_json, write_json
from .data import LEVELS
from .features import to_device
from .metrics import weighted_f1
from .models import encoder_layer_lrs, pretrained_parameters
from .progress import bar as progress_bar
from .runtime import announce_precision, autocast, choose_precision, pick_device


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float | None = None  # learning rate of trainable encoder layers (default: lr)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    patience: int = 3
    loss_weights: tuple = (0.1, 0.1, 0.8)  # cat1, cat2, cat3
    class_weight: str | None = None  # None or "balanced"
    sampling: str | None = None  # None, "over" (square-root balanced draws) or "under" (cap at the median)
    mixup: float = 0.0  # Beta(alpha, alpha) on the float inputs; 0 = off
    precision: str = "auto"  # auto (from the hardware), bf16, fp16 (with a GradScaler) or fp32
    layer_decay: float = 1.0  # layer-wise learning-rate decay of pretrained encoder layers (1: off)
    steps_per_epoch: int = 0  # optimiser steps per epoch on a fresh random share of the rows (0: every row)
    min_steps: int = 0  # at least this many optimiser steps in all: more epochs on a smaller dataset
    optimizer: str = "adamw"  # or radam
    lr_schedule: str = "cosine"  # cosine with warmup, or step (halved every 10 epochs)
    grad_clip: float = 1.0
    distill_weight: float = 0.0  # > 0: mean over hard rows + this x mean over soft-target rows
    compile: bool = False  # torch.compile, GPU only
    seed: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)  # anything else that defines the run (data, split, model)


class TensorData(Dataset):
    """Rows of a dict of equally long tensors (cached features and labels)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.tensors.items()}

    def with_soft_labels(self, rows, soft: dict[str, np.ndarray]) -> "TensorData":
        """A copy whose `rows` train on soft targets (per level, (len(rows), classes) probabilities: the ensemble's
        test predictions, for distillation) instead of their labels; see `soft_targets`."""
        tensors = dict(self.tensors)
        for level, probs in soft.items():
            full = torch.zeros(self.n, probs.shape[1])
            full[torch.as_tensor(np.asarray(rows))] = torch.as_tensor(probs, dtype=torch.float32)
            tensors[f"soft_{level}"] = full
        flags = torch.zeros(self.n, dtype=torch.bool)
        flags[torch.as_tensor(np.asarray(rows))] = True
        tensors["soft"] = flags
        copy = TensorData(tensors)
        copy.soft_digest = soft_digest(rows, soft)
        return copy

    def extended(self, extra: dict[str, torch.Tensor]) -> tuple["TensorData", np.ndarray]:
        """A copy with `extra` rows appended (same keys), and the indices of those rows."""
        n_extra = len(next(iter(extra.values())))
        merged = {k: torch.cat([v, extra[k].to(v.dtype)]) for k, v in self.tensors.items()}
        return TensorData(merged), np.arange(self.n, self.n + n_extra)


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


def soft_digest(rows, soft: dict[str, np.ndarray]) -> str:
    """Changes with the soft targets: a student of other teachers is retrained, never reused."""
    h = hashlib.sha1(np.asarray(rows, dtype=np.int64).tobytes())
    for level in sorted(soft):
        h.update(np.round(np.asarray(soft[level], dtype=np.float64), 6).tobytes())
    return h.hexdigest()[:12]


def soft_targets(batch: dict, level: str, n_classes: int) -> torch.Tensor:
    """Per item of a batch: its soft target where it has one (`soft`), else the one-hot of its label."""
    hard = nn.functional.one_hot(batch[level].clamp(min=0), n_classes).float()
    return torch.where(batch["soft"][:, None], batch[f"soft_{level}"].float(), hard)


def config_hash(cfg: TrainConfig, model: nn.Module) -> str:
    spec = json.dumps({"cfg": asdict(cfg), "model": repr(model)}, sort_keys=True, default=str)
    return hashlib.sha1(spec.encode()).hexdigest()[:16]


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
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(np.clip(weights, 0.05, 20.0), dtype=torch.float32)


def epoch_indices(labels: np.ndarray, sampling: str | None, rng: np.random.Generator) -> np.ndarray:
    """Positions (into the training rows) drawn for one epoch under the sampling option."""
    n = len(labels)
    if sampling is None:
        return rng.permutation(n)
    counts = np.bincount(labels)
    if sampling == "over":
        p = 1.0 / np.sqrt(counts[labels])
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    if sampling == "under":
        cap = int(np.median(counts[counts > 0]))
        keep = [rng.permutation(np.flatnonzero(labels == c))[:cap] for c in np.unique(labels)]
        return rng.permutation(np.concatenate(keep))
    raise ValueError(f"sampling must be None, 'over' or 'under', not {sampling!r}")


def batches(data: Dataset, indices, batch_size: int, device: str = "cpu", rank: int = 0, world: int = 1,
            epoch: int = 0):
    """Batches of the given rows, in order. Cached tensors are sliced directly (no per-row Python work).
    Data-parallel (`world` processes): this process's share of each batch, its rows rank, rank + world, ...
    `epoch` seeds raw rows' augmentation (with the row), so a resumed epoch draws what it drew before."""
    indices = np.asarray(indices)
    groups = [indices[start:start + batch_size][rank::world] for start in range(0, len(indices), batch_size)]
    if isinstance(data, TensorData):
        for group in groups:
            chunk = torch.from_numpy(group)
            yield {k: v[chunk] for k, v in data.tensors.items()}
    elif hasattr(data, "loader"):  # raw rows (end to end): decoded and tokenized per batch, in worker processes
        yield from data.loader(groups, device, epoch)
    else:
        yield from DataLoader(data, batch_sampler=[g.tolist() for g in groups])


def _mix(batch: dict, alpha: float, rng: np.random.Generator):
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(batch["cat3"])))
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


def _scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int, epochs: int):
    """Stepped once per optimiser step: cosine decay after a linear warmup, or (9th place) halved every 10 epochs."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10 * max(1, steps_per_epoch), gamma=0.5)
    from transformers import get_cosine_schedule_with_warmup

    total = max(1, steps_per_epoch * epochs)
    return get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)


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
    """Torch's random states, the GPUs' too (dropout and modality dropout draw there): a resumed run is the same run."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return {"torch_rng": torch.get_rng_state(), "cuda_rng": cuda}


def set_rng_states(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"])
    cuda = state.get("cuda_rng")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


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


def fit(model: nn.Module, data: Dataset, train_idx, val_idx, cfg: TrainConfig, run_dir, name: str = "model",
        verbose: bool = True, budget: TimeBudget | None = None, checkpoint_minutes: float = 0.0) -> FitResult:
    """Train `model` on rows `train_idx` of `data`, early-stopping on weighted F1 of cat3 on `val_idx`.

    `last.pt` is written after every epoch and, with `checkpoint_minutes`, every that many minutes within one
    (long epochs on a session that may disconnect); a rerun resumes from it, mid-epoch included, with the same
    batches and random draws as an uninterrupted run. `budget`: before each optimiser step, if twice the mean
    step time no longer fits, save `last.pt` and raise TimeBudgetExceeded."""
    from . import distributed

    budget = budget if budget is not None else session_budget()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world = distributed.world()  # data-parallel: process `rank` of `world` (see utils/distributed.py)
    main = rank == 0                   # the one that prints and writes
    verbose = verbose and main
    device = pick_device(cfg.device)
    precision = choose_precision(device, cfg.precision)
    if main:
        announce_precision(device, precision)
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    label_bytes = b"".join(data_labels(data, idx, level).tobytes() for idx in (train_idx, val_idx) for level in LEVELS)
    cfg.extra = {**cfg.extra, "train_rows": hashlib.sha1(train_idx.tobytes()).hexdigest()[:12],
                 "val_rows": hashlib.sha1(val_idx.tobytes()).hexdigest()[:12],
                 "labels": hashlib.sha1(label_bytes).hexdigest()[:12],  # corrected labels mean a new run
                 **({"soft_targets": data.soft_digest} if getattr(data, "soft_digest", None) else {})}
    key = config_hash(cfg, model)
    done = _finished(run_dir, key, model, name)
    if done:
        if verbose:
            print(f"{name}: already trained with this configuration ({run_dir}); loaded its best checkpoint")
        return FitResult(model, done["history"], done["best_score"], done["best_epoch"], done["seconds"], skipped=True)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    pretrained = pretrained_parameters(model)
    groups = [{"params": [p for p in params if id(p) not in pretrained], "lr": cfg.lr}]
    layer_lr = encoder_layer_lrs(model, cfg.encoder_lr or cfg.lr, cfg.layer_decay)
    for lr in sorted({layer_lr.get(id(p), cfg.encoder_lr or cfg.lr) for p in params if id(p) in pretrained}):
        groups.append({"params": [p for p in params if id(p) in pretrained
                                  and layer_lr.get(id(p), cfg.encoder_lr or cfg.lr) == lr], "lr": lr})
    optimizer = (torch.optim.RAdam if cfg.optimizer == "radam" else torch.optim.AdamW)(groups, weight_decay=cfg.weight_decay)
    labels = {level: data_labels(data, train_idx, level) for level in LEVELS}
    rows_per_epoch = len(train_idx)
    if cfg.steps_per_epoch:
        rows_per_epoch = min(rows_per_epoch, cfg.steps_per_epoch * cfg.batch_size * cfg.grad_accum)
    steps_per_epoch = int(np.ceil(rows_per_epoch / cfg.batch_size / cfg.grad_accum))
    epochs = max(cfg.epochs, int(np.ceil(cfg.min_steps / max(1, steps_per_epoch))))
    scheduler = _scheduler(optimizer, cfg, steps_per_epoch, epochs)
    weights = {level: (_class_weights(labels[level], model.heads.heads[level].out_features).to(device)
                       if cfg.class_weight == "balanced" else None) for level in LEVELS}
    losses = {level: nn.CrossEntropyLoss(weight=weights[level]) for level in LEVELS}
    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
                                      gradient_as_bucket_view=True)  # no second copy of the gradients
    step_model = ddp or model
    step_model = torch.compile(step_model) if cfg.compile and device == "cuda" else step_model
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")  # fp16 gradients underflow

    history, best, best_epoch, start_epoch, seconds, resumed = [], -1.0, -1, 0, 0.0, False
    best_loss = float("inf")  # the best epoch's validation loss: breaks a tie in F1 (a majority-class plateau)
    best_probs = None  # the best epoch's validation probabilities, if that epoch ran in this call
    within = None  # where an epoch stopped part-way: {"epoch", "step", "rng_now", "total_loss", "seen", "correct"}
    state = _readable(run_dir / "last.pt", name, lambda p: load_torch(p, weights_only=False, mmap=True))
    if state is not None:
        if state.get("config_hash") == key:
            model.load_state_dict({**model.state_dict(), **state["model"]})
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            resume_scaler(scaler, state["scaler"])
            rng.bit_generator.state = state["rng"]
            set_rng_states(state)
            history, best, best_epoch, seconds = state["history"], state["best"], state["best_epoch"], state["seconds"]
            best_loss = state.get("best_loss", float("inf"))
            start_epoch, resumed, within = state["epoch"] + 1, True, state.get("within")
            if verbose:
                where = f", step {within['step'] + 1}" if within else ""
                print(f"{name}: resuming from epoch {start_epoch + 1}{where} ({run_dir / 'last.pt'})")

    def save_last(epoch_done: int, rng_state, part=None, elapsed: float = 0.0):
        if not main:
            return
        with atomic_path(run_dir / "last.pt") as tmp:
            torch.save({"config_hash": key, "model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state,
                        **rng_states(), "history": history, "best": best, "best_loss": best_loss,
                        "best_epoch": best_epoch, "epoch": epoch_done, "seconds": seconds + elapsed,
                        "within": part}, tmp)

    lw = dict(zip(LEVELS, cfg.loss_weights))
    for epoch in range(start_epoch, epochs):
        if best_epoch >= 0 and epoch - best_epoch > cfg.patience:
            break
        t0 = time.time()
        model.train()
        epoch_rng = rng.bit_generator.state  # a mid-epoch resume redraws this epoch's order from here
        order = train_idx[epoch_indices(labels["cat3"], cfg.sampling, rng)][:rows_per_epoch]
        if 0 < len(order) % cfg.batch_size < world:  # every process needs a row of the last batch
            order = order[:len(order) - len(order) % cfg.batch_size]
        n_batches = int(np.ceil(len(order) / cfg.batch_size))
        total_loss, seen, correct, first = 0.0, 0, 0, 0
        if within is not None and within["epoch"] == epoch:
            first, total_loss, seen, correct = within["step"], within["total_loss"], within["seen"], within["correct"]
            rng.bit_generator.state = within["rng_now"]
        within, saved_at, step_started = None, time.time(), time.time()
        optimizer.zero_grad(set_to_none=True)
        bar = progress_bar(batches(data, order[first * cfg.batch_size:], cfg.batch_size, device, rank, world, epoch),
                           f"{name} epoch {epoch + 1}/{epochs}", n_batches, inner=True, initial=first, disable=not main)
        for step, batch in enumerate(bar, start=first):
            if step > first and step % cfg.grad_accum == 0:  # between optimiser steps: a clean place to stop
                mean_step = (time.time() - step_started) / (step - first)
                late = checkpoint_minutes and time.time() - saved_at > checkpoint_minutes * 60
                stop = budget is not None and not budget.allows(2 * mean_step * cfg.grad_accum)
                if budget is not None or checkpoint_minutes:
                    late, stop = distributed.agree(late), distributed.agree(stop)
                if late or stop:
                    save_last(epoch - 1, epoch_rng, {"epoch": epoch, "step": step, "rng_now": rng.bit_generator.state,
                                                     "total_loss": total_loss, "seen": seen, "correct": correct},
                              time.time() - t0)
                    saved_at = time.time()
                    if stop:
                        raise TimeBudgetExceeded(f"{name}: stopped at epoch {epoch + 1}, step {step + 1} of {n_batches} "
                                                 f"before the {budget.hours} h time budget ran out; saved "
                                                 f"{run_dir / 'last.pt'}")
            batch = to_device(batch, device)
            perm, lam = None, 1.0
            if cfg.mixup > 0:
                batch, perm, lam = _mix(batch, cfg.mixup, rng)
            optimiser_step = (step + 1) % cfg.grad_accum == 0 or step + 1 == n_batches
            with gradient_sync(ddp, optimiser_step):
                with autocast(device, precision):
                    logits = step_model(batch)
                    loss = _loss(logits, batch, losses, lw, perm, lam, cfg.distill_weight)
                share = 1.0
                if world > 1:  # DDP averages gradients over processes: weigh each by its share of the batch's rows
                    in_batch = len(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
                    share = len(batch["cat3"]) * world / in_batch
                scaler.scale(loss * share / cfg.grad_accum).backward()
            if optimiser_step:
                scaler.unscale_(optimizer)  # clip the true gradients
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                scaler.step(optimizer)  # skipped when fp16 overflowed; the scale then shrinks
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            n = len(batch["cat3"])
            total_loss += float(loss.detach()) * n
            seen += n
            correct += int((logits["cat3"].argmax(-1) == batch["cat3"]).sum())  # rows with soft targets never count
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        total_loss, seen, correct = distributed.total([total_loss, seen, correct])
        probs = distributed.gather_rows(predict(model, data, val_idx[rank::world], device=cfg.device,
                                                desc="validating", precision=precision))
        y_val = data_labels(data, val_idx)
        val_loss = float(np.mean(-np.log(probs["cat3"][np.arange(len(val_idx)), y_val] + 1e-9)))
        score = weighted_f1(y_val, probs["cat3"].argmax(1))
        seconds += time.time() - t0
        record = {"epoch": epoch + 1, "train_loss": total_loss / seen, "train_accuracy_cat3": correct / seen,
                  "val_loss_cat3": val_loss, "val_accuracy_cat3": float((probs["cat3"].argmax(1) == y_val).mean()),
                  "val_weighted_f1_cat3": score, "seconds": time.time() - t0}
        history.append(record)
        improved = score > best or (score == best and val_loss < best_loss)
        if improved:
            best, best_loss, best_epoch, best_probs = score, val_loss, epoch, probs
            if main:
                with atomic_path(run_dir / "best.pt") as tmp:
                    torch.save(_trainable_state(model), tmp)
        save_last(epoch, rng.bit_generator.state)
        if verbose:
            print(f"{name} epoch {epoch + 1:>2}/{epochs}: train loss {record['train_loss']:.3f} "
                  f"acc {record['train_accuracy_cat3']:.3f} | val loss {val_loss:.3f} "
                  f"weighted F1 {score:.4f}{' *' if improved else ''} ({record['seconds']:.1f}s)")

    distributed.barrier()  # process 0 has written best.pt
    del optimizer, scaler, step_model, ddp  # AdamW's moments are twice the trained weights: free them now
    release(model)
    load_checkpoint(model, run_dir / "best.pt")
    if main:
        write_json({"config_hash": key, "history": history, "best_score": best, "best_epoch": best_epoch,
                    "seconds": seconds, "config": asdict(cfg)}, run_dir / "result.json")
        (run_dir / "last.pt").unlink(missing_ok=True)
    distributed.barrier()
    return FitResult(model, history, best, best_epoch, seconds, resumed=resumed, val_probs=best_probs)


def data_labels(data: Dataset, indices, level: str = "cat3") -> np.ndarray:
    if hasattr(data, "labels_of"):
        return data.labels_of(indices, level)
    if hasattr(data, "tensors"):
        return data.tensors[level][np.asarray(indices)].numpy()
    return np.array([int(data[i][level]) for i in indices])
