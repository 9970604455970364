"""Data-parallel training of one model: its batches split over processes, one per GPU, through PyTorch's
DistributedDataParallel (nccl on GPUs; gloo on the CPU, which the tests use). Each process draws the same epoch
order and takes every `world`-th row of each batch, DDP averages the gradients, so the optimiser steps are those
of one process with the whole batch (within float rounding).

Used for end-to-end training (`training_mode=end_to_end`: the full profile's fine-tunes and multimodal models,
where a run's GPU hours go) of single models (04, 05, 03's and 02's comparisons). K-fold units are already spread
over the GPUs one unit per process (`ensemble.kfold_predictions`), and cached-state models train in seconds.
"""
from __future__ import annotations

import os
import socket
from datetime import timedelta

import numpy as np


def world() -> tuple[int, int]:
    """(rank, number of processes) of this process's data-parallel group; (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def processes_for(cfg) -> int:
    """How many processes one training uses (one model's data-parallel group, or K-fold units at once):
    `processes`, or one per GPU (0); 1 without a GPU unless set."""
    import torch

    return cfg.processes or (torch.cuda.device_count() if torch.cuda.is_available() else 1)


def group_size(cfg) -> int:
    """Processes of one model's data-parallel group: `processes_for`, at most one per GPU where it trains on
    GPUs (NCCL refuses two ranks on one device, "Duplicate GPU detected"); K-fold units, one process each, may
    share a GPU."""
    import torch

    wanted = processes_for(cfg)
    on_gpus = str(cfg.device) != "cpu" and torch.cuda.is_available()
    return max(1, min(wanted, torch.cuda.device_count())) if on_gpus else wanted


def cpu_threads(processes: int) -> int:
    """Each of `processes` CPU processes gets its share of the cores."""
    return max(1, (os.cpu_count() or 1) // processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, device: str, threads: int, fn, args) -> None:
    import torch
    import torch.distributed as dist

    from .runtime import deterministic

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    deterministic()
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank % torch.cuda.device_count())
    else:
        torch.set_num_threads(threads)
    # an hour, not NCCL's ten minutes: the other ranks wait while rank 0 writes a 7 GB last.pt (to a Drive mount)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size, timeout=timedelta(hours=1))
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def launch(fn, processes: int, args: tuple, device: str = "auto", stops: tuple = ()) -> None:
    """`fn(*args)` in `processes` spawned processes forming one data-parallel group (spawned: safe with CUDA and
    from a notebook); process i on GPU i, or on the CPU with its share of the cores. Raises if one fails, an
    exception of `stops` (the stops a rerun continues from: TimeBudgetExceeded, DiskFull) as itself, which
    run_all.sh and 00 tell from failures by its name."""
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_worker, args=(processes, _free_port(), device, cpu_threads(processes), fn, args),
                           nprocs=processes, start_method="spawn")
    except mp.ProcessRaisedException as exc:
        stop = _as_stop(exc, stops)
        if stop is None:
            raise
        raise stop from exc


def _as_stop(exc: Exception, stops: tuple) -> Exception | None:
    """A worker's exception of `stops`, which torch hands back as ProcessRaisedException with the worker's
    traceback as text (its last line `module.Name: message`), as that exception; None for others."""
    last = next((line for line in reversed(str(exc).splitlines()) if line.strip()), "")
    name, _, message = last.partition(": ")
    for kind in stops:
        if name.rsplit(".", 1)[-1] == kind.__name__:
            return kind(message)
    return None


def _device_of_group() -> str:
    import torch
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


def total(values: list[float]) -> list[float]:
    """Each value summed over the group's processes (the epoch's loss and accuracy counts)."""
    import torch
    import torch.distributed as dist

    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device_of_group())
    dist.all_reduce(t)
    return t.tolist()


def agree(flag: bool) -> bool:
    """Process 0's decision, for all (stop for the time budget, save now): clocks differ between processes."""
    import torch.distributed as dist

    if world()[1] == 1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0, device=_device_of_group())
    return bool(box[0])


def gather_rows(local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every process's arrays for rows rank, rank + world, ... of a list, put back in the list's order."""
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return local
    parts = [None] * size
    dist.all_gather_object(parts, local)
    out = {}
    for key in local:
        n = sum(len(p[key]) for p in parts)
        merged = np.empty((n, *local[key].shape[1:]), dtype=local[key].dtype)
        for r, p in enumerate(parts):
            merged[r::size] = p[key]
        out[key] = merged
    return out


def barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()
