"""The GPU check behind benchmarks/gpu_check.sh: the full profile's large models at the plan's micro-batch, measured.

    benchmarks/gpu_check.sh                  # on a GPU machine: at most 7 minutes; exit 1 where a measurement
                                             # exceeds the plan, 2 without a CUDA GPU
    benchmarks/gpu_check.sh --cpu-smoke      # tiny shapes on the CPU, seconds: the script's own code, for the tests

Why: utils/plan/ sizes every run from figures traced on the CPU and an assumed share of each card's peak; a
few minutes on the real card say whether they hold. For each large kind (text_finetuned: RoBERTa-large with the
layer-wise heads; image_finetuned: ViT-L/32 at 384 px; fusion_transformer: both), with random weights built from
their configurations (no hub), at the micro-batch, gradient accumulation and checkpointing `plan.adapt` chooses
for this machine, in the precision the run would use (fp16 with a GradScaler below compute capability 8, bf16
from it): a few optimiser steps end to end (items/s, torch.cuda.max_memory_allocated), the activations per item
(two micro-batches' forward and backward), a validation batch of 256 (peak, items/s); the project's loader on
384 px photos (images/s); with two GPUs, the same step in two DDP processes. Every measurement goes to
benchmarks/results/gpu_check-<GPU>-<time>.csv, which the plan then reads instead of its own figures.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("text_finetuned", "image_finetuned", "fusion_transformer")
FIELDS = ("date", "machine", "gpu", "capability", "torch", "precision", "kind", "phase", "micro_batch",
          "grad_accum", "checkpointing", "processes", "items_per_s", "planned_items_per_s", "peak_gb", "planned_gb",
          "act_mib_per_item", "infer_mib_per_item", "verdict", "note", "signature")
# stop starting new measurements a minute before gpu_check.sh's limit (GPU_CHECK_LIMIT_S, 420 s: room for a rerun)
DEADLINE_S = int(os.environ.get("GPU_CHECK_LIMIT_S", "420")) - 60
GB = 2**30


def verdict(measured: float | None, planned: float | None, kind: str) -> str:
    """ok, or over: a peak above the plan (memory), or fewer items/s than the plan expects (time), beyond the
    tolerances of the plan's table of constants (MEMORY_SLACK, SPEED_SLACK in utils/plan/assumed.py)."""
    from utils.plan.assumed import MEMORY_SLACK, SPEED_SLACK

    if measured is None or planned is None or planned <= 0:
        return "ok"
    if kind == "memory":
        return "over" if measured > planned * MEMORY_SLACK else "ok"
    return "over" if measured < planned * SPEED_SLACK else "ok"


def refuse_without_cuda() -> int:
    """Exit 2 with the reason (a CPU build, or a driver too old for this torch's CUDA): this check has nothing to
    measure without a CUDA GPU."""
    from utils.runtime import why_no_cuda

    print(f"gpu_check: no CUDA GPU here: {why_no_cuda()}. This check measures a GPU; "
          "`benchmarks/gpu_check.sh --cpu-smoke` runs its code on the CPU.", file=sys.stderr)
    return 2


def setup(smoke: bool, platform_name: str | None):
    """The configuration (adapted to this machine as a run would be), the platform, device and precision."""
    from utils import plan
    from utils.config import build
    from utils.runtime import choose_precision, deterministic

    deterministic()  # the kernels a run's training uses (utils/runtime.py), so that its rates are a run's
    settings = {"training_mode": "end_to_end", **{f"{k}.training_mode": "end_to_end" for k in KINDS}}
    if smoke:  # the tiny text encoder and timm's test ViT (0.3 M weights, 160 px): the full profile's code paths
        settings.update(device="cpu", image_model="test_vit", image_size=160, batch_size=4, grad_accum=2)
    cfg = build("tiny" if smoke else "full", settings)
    platform = plan.platform_named(platform_name)
    adapted, notes = plan.adapt(cfg, platform)
    device = "cpu" if smoke else "cuda"
    return adapted, notes, platform, device, choose_precision(device, adapted.precision)


def batch_of(kind: str, cfg, n: int, device: str) -> dict:
    """`n` random items as `kind` reads raw rows, built as the plan traces them (plan.raw_batch), on `device`."""
    from utils import plan
    from utils.kinds import get as kind_spec

    return plan.raw_batch(cfg, n, kind_spec(kind).reads, device)


def loss_of(model, batch, cfg):
    """The run's loss: the levels' cross-entropies with the configuration's weights."""
    import torch

    out = model(batch)
    weights = cfg.level_loss_weights
    return sum(w * torch.nn.functional.cross_entropy(out[level].float(), batch[level])
               for w, level in zip(weights, ("cat1", "cat2", "cat3")))


def sync(device: str) -> None:
    """Wait for the GPU, so that a clock reads finished work."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gb(device: str, reset: bool = False) -> float | None:
    """torch.cuda.max_memory_allocated in GB (None on the CPU); `reset` starts a new peak."""
    import torch

    if not device.startswith("cuda"):
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    return torch.cuda.max_memory_allocated() / GB


class Unit:
    """One model of `kind` on the device with its optimiser and loss scaler, stepping as utils/training.py does
    (autocast, loss / accumulation, unscale, clip, step, zero_grad(set_to_none))."""

    def __init__(self, kind: str, cfg, device: str, precision: str, ddp_rank: int | None = None):
        import torch

        from utils import plan
        from utils.runtime import autocast

        self.cfg, self.device, self.precision = cfg, device, precision
        self.model = plan.build(kind, cfg, device=device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step_model = self.model
        if ddp_rank is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.step_model = DistributedDataParallel(self.model, device_ids=[ddp_rank])
        optimizer = torch.optim.RAdam if cfg.schedule(kind).optimizer == "radam" else torch.optim.AdamW
        self.optimizer = optimizer(self.params, lr=1e-5, weight_decay=0.01)
        self.scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
        self.autocast = lambda: autocast(device, precision)

    def step(self, batch: dict, accum: int) -> None:
        """One optimiser step over `accum` micro-batches (DDP: gradients exchanged once, at the last)."""
        import torch

        for i in range(accum):
            exchange = self.step_model is self.model or i == accum - 1
            with nullcontext() if exchange else self.step_model.no_sync():
                with self.autocast():
                    loss = loss_of(self.step_model, batch, self.cfg)
                self.scaler.scale(loss / accum).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def forward_backward_peak(self, batch: dict) -> float | None:
        """The allocator's peak over one forward and backward (no step), gradients dropped after."""
        peak_gb(self.device, reset=True)
        with self.autocast():
            loss = loss_of(self.model, batch, self.cfg)
        self.scaler.scale(loss).backward()
        sync(self.device)
        peak = peak_gb(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        return peak

    def predict_peak(self, batch: dict) -> tuple[float | None, float]:
        """The allocator's peak and the seconds of one inference batch, the optimiser's moments still held (as in
        training.fit's validation)."""
        import torch

        self.model.eval()
        peak_gb(self.device, reset=True)
        sync(self.device)
        started = time.perf_counter()
        with torch.no_grad(), self.autocast():
            self.model(batch)
        sync(self.device)
        seconds = time.perf_counter() - started
        self.model.train()
        return peak_gb(self.device), seconds


def per_item(high: float | None, low: float | None, n_high: int, n_low: int) -> float | None:
    """MiB per item from two peaks (GB) at two batch sizes, as the plan derives its traced figures."""
    from utils import plan

    if high is None or low is None or n_high <= n_low:
        return None
    return plan.per_item(high, low, n_high, n_low) * 1024


def measure_kind(kind: str, cfg, platform, device: str, precision: str, smoke: bool) -> list[dict]:
    """Training steps, activations per item and a validation batch of `kind`, against the plan's expectations."""
    from utils import plan

    exp = plan.expected(kind, cfg, platform)
    unit = Unit(kind, cfg, device, precision)
    micro, accum = cfg.batch_size, cfg.grad_accum
    batch = batch_of(kind, cfg, micro, device)
    unit.step(batch, accum)  # warm-up: kernels chosen, AdamW's moments allocated
    sync(device)
    peak_gb(device, reset=True)
    steps, started = 1 if smoke else 5, time.perf_counter()
    for _ in range(steps):
        unit.step(batch, accum)
    sync(device)
    rate, train_peak = steps * accum * micro / (time.perf_counter() - started), peak_gb(device)
    half = max(1, micro // 2)
    act = per_item(unit.forward_backward_peak(batch), unit.forward_backward_peak(batch_of(kind, cfg, half, device)),
                   micro, half)
    size = 8 if smoke else plan.VALIDATION_BATCH
    unit.predict_peak(batch_of(kind, cfg, size, device))  # warm-up at this size: kernels chosen, not timed
    (val_peak, seconds), (low_peak, _) = (unit.predict_peak(batch_of(kind, cfg, n, device)) for n in (size, size // 2))
    del unit
    common = {"kind": kind, "micro_batch": micro, "grad_accum": accum, "checkpointing": cfg.grad_checkpointing,
              "processes": 1, "signature": plan.signature(kind, cfg)}
    return [{**common, "phase": "train", "items_per_s": rate, "planned_items_per_s": exp["items_per_s"],
             "peak_gb": train_peak, "planned_gb": exp["train_gb"], "act_mib_per_item": act,
             "verdict": _worst(verdict(train_peak, exp["train_gb"], "memory"),
                               verdict(rate, exp["items_per_s"], "speed"))},
            {**common, "phase": "predict", "micro_batch": size, "items_per_s": size / seconds,
             "planned_items_per_s": exp["infer_per_s"], "peak_gb": val_peak, "planned_gb": exp["predict_gb"],
             "infer_mib_per_item": per_item(val_peak, low_peak, size, size // 2),
             "verdict": _worst(verdict(val_peak, exp["predict_gb"], "memory"),
                               verdict(size / seconds, exp["infer_per_s"], "speed"))}]


def _worst(*verdicts: str) -> str:
    return "over" if "over" in verdicts else "ok"


def measure_host(device: str) -> dict:
    """The process's resident memory after imports and CUDA's start (a context, cuBLAS loaded): the plan's
    HOST_BASE_GB."""
    import torch

    from utils import plan

    if device.startswith("cuda"):
        x = torch.ones(256, 256, device=device)
        (x @ x).sum().item()
    with open("/proc/self/status", encoding="ascii") as fh:
        rss = int(fh.read().split("VmRSS:")[1].split()[0]) * 1024 / GB
    return {"kind": "process", "phase": "host", "peak_gb": rss, "planned_gb": plan.HOST_BASE_GB,
            "verdict": verdict(rss, plan.HOST_BASE_GB, "memory"), "note": "after imports and CUDA's start"}


def _photos(folder: Path, n: int, size: tuple[int, int], distinct: int = 64) -> list[str]:
    """`n` photo paths over `distinct` synthetic JPEGs (each decoded anew, as an epoch decodes the real ones)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(min(n, distinct)):
        files.append(str(folder / f"{i}.jpg"))
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(files[-1], quality=90)
    return [files[i % len(files)] for i in range(n)]


def measure_loader(cfg, platform, device: str, smoke: bool) -> dict:
    """The project's end-to-end loader (rows.RawRows: decode at reduced scale, 03's augmentation, uint8) over
    synthetic JPEGs of the real photos' size, in its worker processes, at the plan's image size: eight batches
    per worker, so that the batches the workers prefetch before the clock starts are a small part of it.
    Without albumentations (a GPU machine with its own packages) it measures decoding alone and says so."""
    import importlib.util
    from dataclasses import replace
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from utils import inputs, plan, rows
    from utils.data import load_taxonomy

    missing = cfg.image_augment and importlib.util.find_spec("albumentations") is None
    cfg = replace(cfg, image_augment=False) if missing else cfg
    size, workers = 4 if smoke else 32, inputs.loader_workers(cfg, device)
    n = 16 if smoke else 32 * 8 * max(1, workers)
    with tempfile.TemporaryDirectory() as folder:
        files = _photos(Path(folder), n, (80, 60) if smoke else (500, 375))
        tax = load_taxonomy()
        labels = {level: [name] * n for level, name in zip(("cat1", "cat2", "cat3"), tax.records()[0])}
        train = pd.DataFrame({"id": [f"T{i}" for i in range(n)], "overview": ["-"] * n, "image_file": files, **labels})
        ds = SimpleNamespace(train=train, test=train.iloc[:0][["id", "overview", "image_file"]], taxonomy=tax)

        # the loader reads only the encoder's normalisation (rows.preprocessing: no weights)
        data = rows.RawRows(ds, cfg, ("image",)).for_training(np.arange(n))
        groups = [np.arange(i, min(i + size, n)) for i in range(0, n, size)]
        loader = iter(data.loader(groups, device))
        next(loader)  # the workers start: not timed
        started, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch["pixels"])
    rate = seen / max(time.perf_counter() - started, 1e-9)
    planned = plan.loader_rate(workers)
    return {"kind": "loader", "phase": "loader", "micro_batch": size, "processes": workers, "items_per_s": rate,
            "planned_items_per_s": planned, "verdict": verdict(rate, planned, "speed"),
            "note": f"{workers} worker(s), {cfg.image_size} px, augmentation {cfg.image_augment}" +
                    (" (albumentations is not installed here: decoding alone)" if missing else "")}


def _ddp_worker(rank: int, kind: str, cfg, precision: str, port: int, out: str, device: str) -> None:
    """One of two data-parallel processes: its share of each micro-batch, as utils/distributed.py splits it."""
    import json

    import torch
    import torch.distributed as dist

    from utils.runtime import deterministic

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    deterministic()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=2)
    try:
        here = f"cuda:{rank}" if cuda else "cpu"
        unit = Unit(kind, cfg, here, precision, ddp_rank=rank if cuda else None)
        if not cuda:
            from torch.nn.parallel import DistributedDataParallel

            unit.step_model = DistributedDataParallel(unit.model)
        share = -(-cfg.batch_size // 2)
        batch = batch_of(kind, cfg, share, here)
        unit.step(batch, cfg.grad_accum)
        sync(here)
        peak_gb(here, reset=True)
        started = time.perf_counter()
        for _ in range(2):
            unit.step(batch, cfg.grad_accum)
        sync(here)
        seconds = time.perf_counter() - started
        if rank == 0:
            Path(out).write_text(json.dumps({"seconds": seconds, "peak_gb": peak_gb(here),
                                             "items": 2 * 2 * share * cfg.grad_accum}))
    finally:
        dist.destroy_process_group()


def measure_ddp(cfg, platform, precision: str, device: str = "cuda") -> dict:
    """The largest kind the plan lets train in two processes, a few steps under DistributedDataParallel."""
    import json
    import socket
    from dataclasses import replace

    import torch.multiprocessing as mp

    from utils import plan

    two = replace(cfg, processes=2)
    kind = next((k for k in ("fusion_transformer", "text_finetuned", "image_finetuned")
                 if plan.expected(k, two, platform, 2)["train_gb"] + plan.CUDA_CONTEXT_GB <=
                 plan.usable(platform)["gpu"]), None)
    if kind is None:
        return {"kind": "-", "phase": "ddp", "processes": 2, "verdict": "ok",
                "note": "no large kind fits two processes by the plan (DDP's gradient buckets): not measured"}
    exp = plan.expected(kind, two, platform, 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "rank0.json")
        mp.spawn(_ddp_worker, args=(kind, two, precision, port, out, device), nprocs=2, join=True)
        got = json.loads(Path(out).read_text())
    rate = got["items"] / got["seconds"]
    return {"kind": kind, "phase": "ddp", "micro_batch": cfg.batch_size, "grad_accum": cfg.grad_accum,
            "checkpointing": cfg.grad_checkpointing, "processes": 2, "items_per_s": rate,
            "signature": plan.signature(kind, two),
            "planned_items_per_s": exp["items_per_s"], "peak_gb": got["peak_gb"], "planned_gb": exp["train_gb"],
            "verdict": _worst(verdict(got["peak_gb"], exp["train_gb"], "memory"),
                              verdict(rate, exp["items_per_s"], "speed"))}


def _machine(device: str) -> dict:
    import torch

    from utils.runtime import machine_description

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    capability = ".".join(map(str, torch.cuda.get_device_capability(0))) if device.startswith("cuda") else ""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_description(), "gpu": gpu,
            "capability": capability, "torch": torch.__version__}


class Results:
    """Rows written to the CSV as they come (a check stopped by its time limit keeps what it measured)."""

    def __init__(self, folder: Path, common: dict, smoke: bool):
        slug = "".join(c if c.isalnum() else "-" for c in common["gpu"]).strip("-") or "cpu"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"gpu_check-{slug}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        self.common, self.smoke, self.rows = common, smoke, []
        with open(self.path, "w", encoding="utf-8", newline="") as fh:
            csv.DictWriter(fh, FIELDS).writeheader()

    def add(self, row: dict) -> None:
        """Append one measurement to the CSV and print it."""
        smoke = self.smoke and row.get("verdict") != "error"  # a smoke run's figures are not the plan's
        row = {**self.common, **row, **({"verdict": "smoke"} if smoke else {})}
        row = {k: (f"{v:.4g}" if isinstance(v, float) else "" if v is None else v) for k, v in row.items()}
        self.rows.append(row)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            csv.DictWriter(fh, FIELDS, extrasaction="ignore").writerow(row)
        rate = f"{row.get('items_per_s') or '-'} items/s (plan {row.get('planned_items_per_s') or '-'})"
        peak = f"peak {row.get('peak_gb') or '-'} GB (plan {row.get('planned_gb') or '-'})"
        print(f"  {row['kind']:<19} {row['phase']:<8} {rate:<36} {peak:<28} {row['verdict']} {row.get('note', '')}",
              flush=True)


def main(argv=None) -> int:
    """Measure, write the CSV, exit 1 where a measurement exceeds the plan, 2 without CUDA, 3 where a
    measurement failed (its row says why; the others still ran)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU: exercises this code")
    parser.add_argument("--platform", default=None, help="plan against this preset (default: this machine)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder of the CSV (--cpu-smoke: default benchmarks/results/smoke)")
    parser.add_argument("--kinds", default=None, help=f"default: {','.join(KINDS)}; --cpu-smoke: fusion_transformer, "
                                                      f"which runs both towers through every step of the check")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        return refuse_without_cuda()
    started = time.time()
    cfg, notes, platform, device, precision = setup(args.cpu_smoke, args.platform)
    out = Path(args.out) / "smoke" if args.cpu_smoke and args.out == parser.get_default("out") else Path(args.out)
    results = Results(out, {**_machine(device), "precision": precision}, args.cpu_smoke)
    print(f"gpu_check on {results.common['machine']}; planned for {platform.name}; precision {precision} "
          f"({'fp16 with a GradScaler' if precision == 'fp16' else precision}); micro-batch {cfg.batch_size} x "
          f"{cfg.grad_accum}, checkpointing {cfg.grad_checkpointing}" + "".join(f"\n  plan: {n}" for n in notes))
    results.add(measure_host(device))
    kinds = args.kinds or ("fusion_transformer" if args.cpu_smoke else ",".join(KINDS))
    jobs = [(k, lambda k=k: measure_kind(k, cfg, platform, device, precision, args.cpu_smoke))
            for k in kinds.split(",") if k]
    jobs.append(("loader", lambda: [measure_loader(cfg, platform, device, args.cpu_smoke)]))
    if not args.cpu_smoke and torch.cuda.device_count() >= 2:
        jobs.append(("ddp", lambda: [measure_ddp(cfg, platform, precision)]))
    for name, job in jobs:
        if time.time() - started > DEADLINE_S:
            results.add({"kind": name, "phase": "-", "verdict": "ok", "note": f"skipped: past {DEADLINE_S} s"})
            continue
        try:
            for row in job():
                results.add(row)
        except Exception as exc:  # one failed measurement (out of memory, a missing package) leaves the others
            results.add({"kind": name, "phase": "-", "verdict": "error", "note": f"{type(exc).__name__}: {exc}"[:300]})
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    over = [r for r in results.rows if r["verdict"] == "over"]
    failed = [r for r in results.rows if r["verdict"] == "error"]
    print(f"wrote {results.path}; {len(over)} measurement(s) over the plan, {len(failed)} failed"
          + (": exit 3" if failed else ": exit 1" if over else ""))
    print(results.path.read_text(encoding="utf-8"), end="")  # the whole CSV in the log, where only the log returns
    return 3 if failed else 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
