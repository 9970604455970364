#!/usr/bin/env bash
# A GPU check of the full profile's large models at the plan's micro-batch, in at most 7 minutes (see
# benchmarks/gpu_check.py): items/s, peak memory and precision against utils/plan/, the loader's images/s,
# two DDP processes where there are two GPUs; a CSV (in $OUT where that is set, else benchmarks/results/) that
# the plan then reads, printed whole at the end.
#   benchmarks/gpu_check.sh                 # exit 0: within the plan; 1: a measurement exceeds it; 2: no CUDA GPU;
#                                           # 3: a measurement failed (its row says why)
#   benchmarks/gpu_check.sh --cpu-smoke     # tiny shapes on the CPU in seconds (the tests run it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
"$PY" -c "import torch" 2>/dev/null || PY=python3  # a .venv copied from another machine may not run here
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
exec timeout -k 15 "${GPU_CHECK_LIMIT_S:-420}" "$PY" benchmarks/gpu_check.py ${OUT:+--out "$OUT"} "$@"
