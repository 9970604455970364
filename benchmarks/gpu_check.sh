#!/usr/bin/env bash
# A GPU check of the full profile's large models at the plan's micro-batch, in at most 10 minutes (see
# benchmarks/gpu_check.py): items/s, peak memory and precision against utils/plan/, the loader's images/s,
# two DDP processes where there are two GPUs; a CSV under benchmarks/results/ that the plan then reads.
#   benchmarks/gpu_check.sh                 # exit 0: within the plan; 1: a measurement exceeds it; 2: no CUDA GPU
#   benchmarks/gpu_check.sh --cpu-smoke     # tiny shapes on the CPU in seconds (the tests run it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
exec timeout 600 "$PY" benchmarks/gpu_check.py "$@"
