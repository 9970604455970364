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
