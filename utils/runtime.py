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
    label_fixes: Path | None = None

    @property
    def runs_dir(self) -> Path:
        """Checkpoints and histories of every training run (resumable, skipped when unchanged)."""
        return self.output_dir / "runs"

    @property
    def generated(self) -> bool:
        """True on the bundled GENERATED data, which has ground truth; real data has none."""
        return (self.data_dir / "GENERATED.txt").exists()


def default_label_fixes(data_dir: Path, label_fixes: str = "") -> Path | None:
    """The reviewed corrections that apply to `data_dir`: `label_fixes` if given ("none" for none),
    else data/label_fixes.csv for the bundled dataset, else <data_dir>/label_fixes.csv if present."""
    if label_fixes == "none":
        return None
    if label_fixes:
        return Path(label_fixes)
    if data_dir == paths.BUNDLED_DATA_DIR.resolve() and paths.LABEL_FIXES_CSV.exists():
        return paths.LABEL_FIXES_CSV
    own = data_dir / "label_fixes.csv"
    return own if own.exists() else None


def start(profile: str, data_dir: str = "", output_dir: str = "", seed: int = 0, label_fixes: str = "",
          **overrides) -> Run:
    """Resolve the run and print one line a reader needs: which data, which profile, where outputs go."""
    seed_everything(seed)
    cfg = settings(profile, **overrides)
    resolved = resolve_data_dir(data_dir, profile)
    run = Run(cfg, resolved, paths.outputs(output_dir), seed, default_label_fixes(resolved, label_fixes))
    run.output_dir.mkdir(parents=True, exist_ok=True)
    kind = "GENERATED bundled data (not the real contest data)" if run.generated else "real data (no ground truth)"
    fixes = f" | label fixes {run.label_fixes}" if run.label_fixes else ""
    print(f"profile {profile} | data {run.data_dir} [{kind}] | outputs {run.output_dir} | seed {seed}{fixes}")
    return run
