"""What every notebook does first: seed everything, resolve profile, data and output folders, say what runs."""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths
from .profiles import resolve_data_dir, settings


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


@dataclass
class Run:
    cfg: dict
    data_dir: Path
    output_dir: Path
    seed: int

    @property
    def generated(self) -> bool:
        """True on the bundled GENERATED data, which has ground truth; real data has none."""
        return (self.data_dir / "GENERATED.txt").exists()


def start(profile: str, data_dir: str = "", output_dir: str = "", seed: int = 0, **overrides) -> Run:
    """Resolve the run and print one line a reader needs: which data, which profile, where outputs go."""
    seed_everything(seed)
    cfg = settings(profile, **overrides)
    run = Run(cfg, resolve_data_dir(data_dir, profile, seed), paths.outputs(output_dir), seed)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    kind = "GENERATED bundled data (not the real contest data)" if run.generated else "real data (no ground truth)"
    print(f"profile {profile} | data {run.data_dir} [{kind}] | outputs {run.output_dir} | seed {seed}")
    return run
