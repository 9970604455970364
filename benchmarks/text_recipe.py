"""The 9th place's text recipe, option by option, on one dataset: which of it the full profile keeps.

    python benchmarks/text_recipe.py                       # the bundled data, e5-small, cached top 4 layers
    python benchmarks/text_recipe.py --data-dir DIR --epochs 8
    python benchmarks/text_recipe.py --variants 4,5 --epochs 4 --steps-per-epoch 20   # span deletion, end to end

Each variant trains `text_finetuned` from the same start on the run's validation split: the top four text
layers on cached states below them (the layer-wise heads read hidden layer -5, the input of those four), so
that the comparison runs on a CPU. Variants: the heads (pooled: the mean of the final tokens, one linear layer
per level; layerwise: cat1/cat2/cat3 from the first token of hidden layers -5/-3/-1, a transformer block each)
and the loss weights (0.1/0.1/0.8, ours; 0.05/0.15/0.8, the 9th place's). Each is scored with both decoding
rules (product: the most probable consistent path; sum: parents' probabilities added to their children's).
Span deletion changes the tokens, so it needs raw rows: variants 4 and 5 train the whole encoder end to end
(layer-wise heads, without and with span deletion), on `--steps-per-epoch` batches a fresh share of the rows
each epoch (a whole epoch of the bundled data end to end: about 6 minutes on 2 cores). Prints a table; writes it as CSV.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "pooled, 0.1/0.1/0.8": {"text_head": "pooled", "loss_weights": "0.1,0.1,0.8"},
    "layerwise, 0.1/0.1/0.8": {"text_head": "layerwise", "loss_weights": "0.1,0.1,0.8"},
    "layerwise, 0.05/0.15/0.8": {"text_head": "layerwise", "loss_weights": "0.05,0.15,0.8"},
    "pooled, 0.05/0.15/0.8": {"text_head": "pooled", "loss_weights": "0.05,0.15,0.8"},
    "layerwise, end to end": {"text_head": "layerwise", "text_finetuned.training_mode": "end_to_end"},
    "layerwise, end to end, span deletion": {"text_head": "layerwise", "text_finetuned.training_mode": "end_to_end",
                                             "text_augment": "span"},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--output-dir", default=str(ROOT / "outputs" / "benchmarks"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="optimiser steps per epoch (0: all rows)")
    parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))),
                        help="indices into the variant list, comma-separated")
    args = parser.parse_args(argv)

    import pandas as pd

    from utils.experiments import model_data, train_and_score
    from utils.io import write_csv
    from utils.run import start

    common = {"text_finetuned.training_mode": "cached", "text_top_layers": 4, "text_finetuned.epochs": args.epochs,
              "text_finetuned.steps_per_epoch": args.steps_per_epoch, "text_finetuned.lr": 3e-4,
              "text_finetuned.encoder_lr": 5e-5, "text_finetuned.patience": args.epochs,
              "text_finetuned.warmup_ratio": 0.1,
              "cache_dir": str(ROOT / "outputs" / "cache")}
    rows = []
    names = list(VARIANTS)
    for i in (int(v) for v in args.variants.split(",")):
        name = names[i]
        run = start("demo", args.data_dir, args.output_dir, 0, f"text-recipe-{i}", {**common, **VARIANTS[name]})
        ds = run.dataset()
        train_idx, val_idx = run.validation_split(ds)
        started = time.time()
        result, _, _ = train_and_score("text_finetuned", model_data(ds, run.cfg, ["text_finetuned"]), train_idx,
                                       val_idx, ds, run.cfg, run.checkpoints, "text_finetuned", 0, run.dir)
        by_rule = result["weighted_f1_cat3_by_decode"]
        rows.append({"variant": name, "weighted F1 cat3 (product)": round(by_rule["product"], 4),
                     "weighted F1 cat3 (sum)": round(by_rule["sum"], 4),
                     "flat weighted F1 cat3": round(result["flat"]["weighted_f1_cat3"], 4),
                     "macro F1 cat3 (product)": round(result["hierarchical"]["macro_f1_cat3"], 4),
                     "accuracy cat1": round(result["hierarchical"]["accuracy_cat1"], 4),
                     "best epoch": result["best_epoch"], "train seconds": result["train_seconds"],
                     "wall seconds": round(time.time() - started, 1)})
        table = pd.DataFrame(rows)
        print(table.to_string(index=False), flush=True)
        write_csv(table, Path(args.output_dir) / "text_recipe.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
