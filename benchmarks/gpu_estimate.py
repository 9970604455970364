"""What the full profile costs on GPUs: now `python -m utils.plan` (utils/plan/ holds the arithmetic once).

    python benchmarks/gpu_estimate.py                      # = python -m utils.plan --profile full --platform all
    python benchmarks/gpu_estimate.py --mode as-is         # the configuration unchanged (no preset, no adaptation)
    python benchmarks/gpu_estimate.py --set n_folds=3 --json

Kept as a thin wrapper so that the README's and utils/config.py's references to it still run. The per-item
figures it measured on the CPU (parameters, FLOPs, activations saved for backward) are now traced on fake
tensors by utils/plan/ (`--measure`), with the same results; the loader's images/s is measured on the GPU
machine by benchmarks/gpu_check.sh.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.plan import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    defaults = [] if "--platform" in args else ["--platform", "all"]
    sys.exit(main(["--profile", "full", *defaults, *args]))
