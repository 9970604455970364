#!/usr/bin/env bash
# Run the whole pipeline: set up (once), then execute the numbered notebooks in order with papermill.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  cat <<USAGE
Usage: ./run_all.sh [options] [STEP ...]

Sets up a local virtual environment from requirements.txt (once; quick when already done), then
executes notebooks/NN_*.ipynb in order with papermill. Everything one run writes goes into its own
folder, outputs/<run name>/ (config.json, executed notebooks, figures, metrics, submission, ...).

Options:
  --data-dir PATH   run on a folder in the real Dacon layout (train.csv, test.csv,
                    sample_submission.csv, image/train, image/test). Also: DATA_DIR=PATH.
                    Default: the bundled GENERATED dataset (made on first use under data/generated).
  --profile NAME    demo (default): offline, CPU, bundled data;
                    full: the contest settings (GPU; hub names or local model folders);
                    tiny: tiny random models, for smoke tests. Also: PROFILE=NAME.
  --seed N          seed for everything (default 0). Also: SEED=N.
  --set KEY=VALUE   any configuration key, repeatable: --set n_folds=3 --set fusion_transformer.epochs=4
                    (an unknown key or a mistyped value fails at once, listing the valid keys;
                    .venv/bin/python -m utils.config --list prints them all with their defaults).
  --run-name NAME   the run's folder name (default: <profile>-<data folder>-seed<seed>).
  --output-dir PATH where runs go (default: outputs/). Also: OUTPUT_DIR=PATH.
  --cache-dir PATH  the shared, content-keyed cache (default: <output dir>/cache); same as --set cache_dir=PATH.
  --processes N     processes per training, spread over the GPUs (default: one per GPU; 1 without a GPU):
                    K-fold units (fold x seed) trained at once, one process each, and one end-to-end
                    model's data-parallel processes (DDP); same as --set processes=N.
  --setup-only      only create/update .venv.
  --jupyter         set up, then open the notebooks in JupyterLab with the environment's kernel.
  --test            set up, then run the test suite (pytest -n 3 tests/) instead of the notebooks.
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
RUN_NAME=""
SETS=()
STEPS=()
MODE=notebooks
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --setup-only) MODE=setup; shift ;;
    --test) MODE=test; shift ;;
    --jupyter) MODE=jupyter; shift ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --data-dir=*) DATA_DIR="${1#*=}"; shift ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --output-dir) OUTPUT_DIR="$2"; shift 2 ;;
    --output-dir=*) OUTPUT_DIR="${1#*=}"; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    --seed=*) SEED="${1#*=}"; shift ;;
    --run-name) RUN_NAME="$2"; shift 2 ;;
    --run-name=*) RUN_NAME="${1#*=}"; shift ;;
    --cache-dir) SETS+=("cache_dir=$2"); shift 2 ;;
    --cache-dir=*) SETS+=("cache_dir=${1#*=}"); shift ;;
    --processes) SETS+=("processes=$2"); shift 2 ;;
    --processes=*) SETS+=("processes=${1#*=}"); shift ;;
    --set) SETS+=("$2"); shift 2 ;;
    --set=*) SETS+=("${1#*=}"); shift ;;
    [0-9][0-9]) STEPS+=("$1"); shift ;;
    *) echo "run_all.sh: unknown argument '$1' (see ./run_all.sh -h)" >&2; exit 2 ;;
  esac
done
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
  # the platform's own CUDA torch stays; every other requirement is checked against its version range, and only
  # what is missing or too old is installed: from PyPI, or offline (a Kaggle kernel without internet) from
  # wheels attached as a dataset: WHEELS_DIR=/kaggle/input/<dataset>
  PY="$(command -v python3)"
  mapfile -t NEED < <(cd "$REPO" && "$PY" -m utils.environment)
  if [ ${#NEED[@]} -gt 0 ]; then
    echo "==> installing ${NEED[*]}"
    if [ -n "${WHEELS_DIR:-}" ]; then
      "$PY" -m pip install -q --no-index --find-links "$WHEELS_DIR" "${NEED[@]}" || true
    else
      "$PY" -m pip install -q "${NEED[@]}" || true
    fi
    mapfile -t NEED < <(cd "$REPO" && "$PY" -m utils.environment)
    if [ ${#NEED[@]} -gt 0 ]; then
      echo "run_all.sh: still missing or too old: ${NEED[*]}. Offline (a Kaggle kernel without internet)?" \
           "Attach a dataset of their wheels (pip download them elsewhere) and pass WHEELS_DIR=/kaggle/input/<it>" >&2
      exit 2
    fi
  fi
else
  VENV="$REPO/.venv"
  STAMP="$VENV/.requirements.sha256"
  want="$(sha256sum "$REPO/requirements.txt" | cut -d' ' -f1)"
  if ! { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; }; then
    echo "==> setting up $VENV from requirements.txt (first time: a few minutes, about 6 GB)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    # uv resolves the same requirements as pip, with parallel downloads: 68 s from a cold cache here against
    # pip's 151 s from a warm one (set-up counts in the 20-minute budget of the fresh demo run). Bytecode is
    # compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set, every notebook would otherwise
    # recompile torch and transformers on import (24 s instead of 7 per process, measured)
    "$VENV/bin/python" -m pip install -q uv
    "$VENV/bin/python" -m uv pip install -q --compile-bytecode --python "$VENV/bin/python" -r "$REPO/requirements.txt"
    # the environment's Python (and its Jupyter kernel) imports utils from any working directory
    "$VENV/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/hashtag-pipeline.pth", "w").write(sys.argv[1] + "\n")' "$REPO"
    echo "$want" > "$STAMP"
  fi
  PY="$VENV/bin/python"
fi
[ "$MODE" = setup ] && { echo "set up: $PY"; exit 0; }

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export NO_ALBUMENTATIONS_UPDATE=1
export TQDM_MININTERVAL="${TQDM_MININTERVAL:-30}" PIPELINE_QUIET_BARS=1   # a few progress lines per loop in the logs, not thousands
export PIPELINE_NO_APP=1   # executed copies do not start the page of 06's last cell (python -m utils.app does)
export MPLBACKEND=Agg
if [ "$PROFILE" != "full" ]; then export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; fi
if [ "$MODE" = test ]; then
  cd "$REPO" && exec "$PY" -m pytest -q -n 3 --maxschedchunk 1 tests   # 3 workers of one thread each (conftest): the
  # third keeps two cores busy while another waits on a kernel or a process starting (docs/benchmarks.md)
fi
if [ "$MODE" = jupyter ]; then
  cd "$REPO" && exec "$PY" -m jupyter lab --notebook-dir "$REPO/notebooks"
fi

# ---- the run: validate every --set before anything runs; the run folder comes back, the configuration in a file
config_args=(--profile "$PROFILE" --data-dir "$DATA_DIR" --output-dir "$OUTPUT_DIR" --seed "$SEED" --run-name "$RUN_NAME")
for kv in ${SETS[@]+"${SETS[@]}"}; do config_args+=(--set "$kv"); done
RESOLVED="$(mktemp)"
trap 'rm -f "$RESOLVED"' EXIT
RUN_DIR="$(cd "$REPO" && "$PY" -m utils.run "${config_args[@]}" --out "$RESOLVED")" || exit 2
RUN_NAME="$(basename "$RUN_DIR")"

mkdir -p "$RUN_DIR/notebooks"
# one run at a time per run folder: held by a watcher of this shell, released when it ends however it ends
LOCK_OUT="$(mktemp)"
"$PY" -m utils.lock "$RUN_DIR" $$ >"$LOCK_OUT" 2>&1 &
LOCK_PID=$!
while kill -0 "$LOCK_PID" 2>/dev/null && ! grep -q '^held' "$LOCK_OUT"; do sleep 0.1; done
if ! grep -q '^held' "$LOCK_OUT"; then cat "$LOCK_OUT" >&2; rm -f "$LOCK_OUT"; exit 2; fi
grep -v '^held' "$LOCK_OUT" >&2 || true
rm -f "$LOCK_OUT"
trap 'rm -f "$RESOLVED"; kill "$LOCK_PID" 2>/dev/null; wait "$LOCK_PID" 2>/dev/null' EXIT
export PIPELINE_RUN_LOCK="$RUN_DIR"
# the configuration, resolved and validated once, becomes the run's config.json: the notebooks' one channel
CONFIG_JSON="$(cd "$REPO" && "$PY" -m utils.run --record "$RESOLVED" | tail -n 1)" || exit 2
echo "==> run $RUN_NAME (profile $PROFILE, data ${DATA_DIR:-bundled generated}, seed $SEED): $RUN_DIR"
started=$(date +%s)
for nb in "$REPO"/notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$nb")"
  step="${name:0:2}"
  [ "$step" = "00" ] && continue  # the Colab/Kaggle launcher, which runs this script
  if [ ${#STEPS[@]} -gt 0 ] && [[ ! " ${STEPS[*]} " =~ " $step " ]]; then continue; fi
  echo "==> $name"
  export PIPELINE_NOTEBOOK="$step"  # the notebook's disk need is checked against the plan before it starts
  t0=$(date +%s)
  LOG="$RUN_DIR/notebooks/${name%.ipynb}.log"  # papermill's messages; its traceback of a failed cell stays there
  status=0
  { "$PY" -m papermill "$nb" "$RUN_DIR/notebooks/$name" -k python3 --cwd "$REPO" -p CONFIG "$CONFIG_JSON" \
      2>&1 1>&3 3>&- | tee "$LOG" | sed -u '/^Traceback/,$d' >&2 || status=${PIPESTATUS[0]}; } 3>&1
  if [ "$status" -ne 0 ]; then
    if grep -q "\"ename\": \"DiskFull\"" "$RUN_DIR/notebooks/$name" 2>/dev/null; then
      "$PY" - "$RUN_DIR/notebooks/$name" <<'PY' >&2 || true
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
said = [o.get("evalue", "") for c in cells for o in c.get("outputs", []) if o.get("ename") == "DiskFull"]
print("run_all.sh: " + (said[-1] if said else "a disk filled up"))
PY
      exit 4
    fi
    if grep -q "\"ename\": \"TimeBudgetExceeded\"" "$RUN_DIR/notebooks/$name" 2>/dev/null; then
      echo "run_all.sh: $name stopped cleanly before time_budget_hours ran out, its progress saved;" \
           "run the same command again (next session) to continue from there" >&2
      exit 3
    fi
    sed -n '/^Traceback/,$p' "$LOG" | grep -E '^[A-Za-z_][A-Za-z0-9_.]*: ' | tail -n 1 >&2 || true  # the error
    echo "run_all.sh: FAILED at $name; the executed copy with the error is $RUN_DIR/notebooks/$name" \
         "(traceback: $LOG)" >&2
    exit 1
  fi
  echo "    done in $(( $(date +%s) - t0 ))s"
done
echo "All steps done in $(( $(date +%s) - started ))s; run $RUN_NAME: $RUN_DIR"
