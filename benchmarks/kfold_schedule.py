"""What the K-fold fusion transformer's time shortcut costs, on a generated dataset: its out-of-fold weighted F1
with the demo's step budget (`kfold.fusion_transformer.min_steps`, 300 optimiser steps) against fixed epochs.

    python benchmarks/kfold_schedule.py --size second --min-steps 0,300,600

`min_steps=0` is the old rule (6 epochs whatever the dataset's size); 300 is the demo's (on the bundled data's four
training folds exactly its 6 epochs; on a third of the rows about 17); 600 doubles it. Each variant trains the five
fold units in its own folder under outputs/benchmarks/ (the encoder-state cache is shared); prints one line each.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_QUIET_BARS", "1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="second", help="generated dataset: default (bundled) or second")
    parser.add_argument("--min-steps", default="0,300,600")
    parser.add_argument("--kind", default="fusion_transformer")
    args = parser.parse_args(argv)

    from utils.ensemble import fold_spread, kfold_predictions
    from utils.run import start
    from utils.splits import kfold

    for steps in (int(s) for s in args.min_steps.split(",")):
        settings = {"data_size": args.size, "cache_dir": str(ROOT / "outputs" / "cache"),
                    f"kfold.{args.kind}.min_steps": steps}
        with contextlib.redirect_stdout(io.StringIO()):
            run = start("demo", "", str(ROOT / "outputs" / "benchmarks"), 0, f"kfold-schedule-{args.size}-{steps}",
                        settings)
            ds = run.dataset(check_images=False)
            y3 = ds.labels("cat3")
            folds = kfold(y3, run.cfg.n_folds, run.cfg.seed)
            began = time.time()
            result = kfold_predictions(args.kind, ds, run.cfg, folds, [run.cfg.seed], run.checkpoints, run.dir)
            seconds = time.time() - began
        oof, mean, std = fold_spread(result["oof"], y3, folds, ds.taxonomy, run.cfg.decode)
        epochs = run.cfg.schedule(args.kind, "kfold").epochs
        print(f"{args.size}: {args.kind} K-fold, {epochs} epochs or {steps} steps, whichever is more: OOF weighted F1 "
              f"{oof:.3f} (folds {mean:.3f} ± {std:.3f}), {seconds:.0f} s for {run.cfg.n_folds} folds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
