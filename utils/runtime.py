"""Seeding and the device: what every process does first, apart from any run's configuration."""
from __future__ import annotations

import os
import platform
import random

import numpy as np


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
    except ImportError:
        pass


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def machine_description() -> str:
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}; CPU {cpu}"
    return f"CPU only: {cpu}"


PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_ANNOUNCED: set = set()


def choose_precision(device: str, precision: str = "auto", capability: tuple[int, int] | None = None) -> str:
    """Mixed precision from the hardware: bf16 where the GPU computes it natively (compute capability 8.0 or
    higher: A100, H100, L4), fp16 with loss scaling on older GPUs (Colab's and Kaggle's T4, P100, V100, where
    `is_bf16_supported()` may report emulated bf16 that runs at fp32 speed), fp32 on the CPU. An explicit
    `precision` wins; `capability` is for tests (default: the current GPU's)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if not str(device).startswith("cuda"):
        return "fp32"
    import torch

    major, _ = capability or torch.cuda.get_device_capability()
    return "bf16" if major >= 8 else "fp16"


def announce_precision(device: str, precision: str) -> None:
    """Say once per process which precision runs where (a notebook trains a dozen models)."""
    if (device, precision) not in _ANNOUNCED:
        _ANNOUNCED.add((device, precision))
        note = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with loss scaling (GradScaler)", "fp32": "fp32"}
        print(f"precision on {device}: {note[precision]}")


def autocast(device: str, precision: str):
    """Autocast to the precision's half type on the device's own kind (torch runs bf16 and fp16 on the CPU too,
    so the tests take the GPU's branch); fp32: off."""
    import torch

    kind = torch.device(device).type
    if precision in ("bf16", "fp16"):
        return torch.autocast(kind, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return torch.autocast(kind, enabled=False)
