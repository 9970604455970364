#!/usr/bin/env bash
# The faults a real run meets, made for real on the tiny profile, each against an uninterrupted run's submission:
#   1. killed (kill -9 of the whole run) while 04 trains, then the same command again;
#   2. a second start of the same run while the first works: refused at once, naming the holder;
#   3. outputs on a disk too small (a tmpfs): stops before a notebook with the folder and the need; the same
#      command after the disk is grown finishes;
#   4. a truncated checkpoint: named, its unit retrained.
# Prints one line per check and writes them to WORK/fault_drill.txt. Needs root for the tmpfs (else step 3 is skipped).
#
#   benchmarks/fault_drill.sh [WORK_DIR]
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/fault-drill}"
PY="$REPO/.venv/bin/python"
"$REPO/run_all.sh" --setup-only >/dev/null
rm -rf "$WORK" && mkdir -p "$WORK"
REPORT="$WORK/fault_drill.txt"
say() { echo "$*" | tee -a "$REPORT"; }
run() { "$REPO/run_all.sh" --profile tiny --output-dir "$1" "${@:2}"; }
same() { cmp -s "$1/tiny-generated-tiny-seed0/submission.csv" "$WORK/reference/tiny-generated-tiny-seed0/submission.csv"; }

run "$WORK/reference" >"$WORK/reference.log" 2>&1 || { say "reference run FAILED (see $WORK/reference.log)"; exit 1; }
say "reference: uninterrupted tiny run finished"

# 1. killed while 04 trains
setsid "$REPO/run_all.sh" --profile tiny --output-dir "$WORK/killed" >"$WORK/killed-1.log" 2>&1 & first=$!
until grep -q "==> 04_baseline" "$WORK/killed-1.log" 2>/dev/null; do sleep 1; done
sleep 20
kill -9 -- -"$first" 2>/dev/null; wait "$first" 2>/dev/null  # the whole run: its process group
sleep 5  # the notebook's kernel notices its parent is gone and exits
run "$WORK/killed" >"$WORK/killed-2.log" 2>&1 && same "$WORK/killed" \
  && say "killed during 04, rerun: same submission as the uninterrupted run" \
  || say "killed during 04, rerun: DIFFERENT or FAILED (see $WORK/killed-2.log)"

# 2. the same run started twice
( run "$WORK/twice" >"$WORK/twice-1.log" 2>&1 ) & first=$!
until [ -f "$WORK/twice/tiny-generated-tiny-seed0/config.json" ]; do sleep 0.5; done
started=$(date +%s)
run "$WORK/twice" >"$WORK/twice-2.log" 2>&1; code=$?
say "second start: exit $code after $(( $(date +%s) - started )) s: $(tail -n 1 "$WORK/twice-2.log")"
wait "$first"
same "$WORK/twice" && say "the first run, which kept its lock, finished with the same submission" \
  || say "the first run: DIFFERENT or FAILED (see $WORK/twice-1.log)"

# 3. a disk too small
mkdir -p "$WORK/small"
if mount -t tmpfs -o size=12m drill "$WORK/small" 2>/dev/null; then
  run "$WORK/small" >"$WORK/small-1.log" 2>&1; code=$?
  say "12 MB disk: exit $code: $(tail -n 1 "$WORK/small-1.log")"
  mount -o remount,size=2g "$WORK/small"
  run "$WORK/small" >"$WORK/small-2.log" 2>&1 && same "$WORK/small" \
    && say "the same command after the disk grew: same submission" \
    || say "after the disk grew: DIFFERENT or FAILED (see $WORK/small-2.log)"
  cp -r "$WORK/small" "$WORK/small-kept" && umount -l "$WORK/small"
else
  say "disk too small: skipped (cannot mount a tmpfs here)"
fi

# 4. a truncated checkpoint
cp -r "$WORK/reference" "$WORK/damaged"
best="$WORK/damaged/tiny-generated-tiny-seed0/checkpoints/kfold/text_frozen/seed0/fold0/best.pt"
[ -f "$best" ] || best="$(find "$WORK/damaged" -path "*kfold*" -name best.pt | head -n 1)"
head -c 100 "$best" >"$best.cut" && mv "$best.cut" "$best"
run "$WORK/damaged" 06 >"$WORK/damaged.log" 2>&1 && same "$WORK/damaged" \
  && say "truncated $(basename "$(dirname "$best")")/best.pt: $(grep -m1 -o '[^ ]*best.pt[^;]*; set aside[^,]*' "$WORK/damaged/tiny-generated-tiny-seed0/notebooks/06_kfold_ensemble.ipynb" || echo 'named'); retrained, same submission" \
  || say "truncated checkpoint: DIFFERENT or FAILED (see $WORK/damaged.log)"
echo "report: $REPORT"
