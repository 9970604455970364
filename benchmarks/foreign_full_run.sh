#!/usr/bin/env bash
# The full profile, end to end on the CPU, on a dataset in the real layout that the project's generator did not
# make (tests/foreign_data.py), with the encoders a user without internet brings: a local Hugging Face folder for
# the text (the e5-small that set-up builds), a timm name for the image model and a local weights file for it
# (Lite0's ImageNet weights exported in timm's format), and `--set` overrides that shorten the run.
# Prints the wall time and the peak resident memory of the largest process (GNU time).
#
#   [STYLE=mixed] benchmarks/foreign_full_run.sh [WORK_DIR] [TRAIN_ROWS] [TEST_ROWS] [run_all.sh arguments: STEP ..., --processes N, --set K=V]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/foreign-full}"
TRAIN_ROWS="${2:-600}"
TEST_ROWS="${3:-150}"
shift $(( $# < 3 ? $# : 3 ))
PY="$REPO/.venv/bin/python"
"$REPO/run_all.sh" --setup-only >/dev/null
mkdir -p "$WORK"
STYLE="${STYLE:-simple}"     # STYLE=mixed: the peer benchmark's harder data (tests/foreign_data.py)
DATA="$WORK/data-$STYLE-$TRAIN_ROWS"
[ -f "$DATA/train.csv" ] || "$PY" "$REPO/tests/foreign_data.py" "$DATA" --train "$TRAIN_ROWS" --test "$TEST_ROWS" \
  --style "$STYLE"
TEXT="$WORK/text-model"      # a local Hugging Face folder
WEIGHTS="$WORK/tf_efficientnet_lite0.safetensors"
"$PY" "$REPO/benchmarks/offline_encoders.py" "$WORK" >/dev/null
SHORT=(--set max_len=32 --set image_size=64 --set batch_size=16 --set n_folds=2 --set epochs=1
       --set text_finetuned.epochs=1 --set image_finetuned.epochs=1 --set fusion_transformer.epochs=1
       --set fusion_width=64 --set fusion_ff=128 --set gradcam_explain=32 --set gradcam_calibrate=16
       --set eda_sample_images=4 --set gallery_size=4 --set kfold_seeds=0
       --set device=cpu --set num_workers=2)
cd "$REPO"
/usr/bin/time -v ./run_all.sh --profile full --data-dir "$DATA" --output-dir "$WORK/outputs" \
  --cache-dir "$WORK/cache" --set text_model="$TEXT" --set image_model=tf_efficientnet_lite0 \
  --set image_weights="$WEIGHTS" "${SHORT[@]}" "$@" 2> >(tee "$WORK/time-$TRAIN_ROWS.txt" >&2)
grep -E "Elapsed|Maximum resident" "$WORK/time-$TRAIN_ROWS.txt"
