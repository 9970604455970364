"""The headline numbers, one column per run, read from each run's metrics.json, and the targets that must hold
on every development dataset.

    python benchmarks/results_table.py outputs/demo-generated-seed0 outputs/demo-generated-second-seed0

The runs are made by `./run_all.sh` (the bundled data) and `./run_all.sh --set data_size=second` (the second
development dataset, generated differently: utils/generate.py, `SECOND`). Prints a Markdown table and one line
per target and run; exits 1 when a target is missed, so a regression shows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from utils import kinds  # noqa: E402

TARGET_LABEL_SUSPECTS = 0.8   # precision and recall of 02's label suspects
TARGET_GRADCAM = 0.75         # share of the CNN's heatmap peaks inside the class object, layer and method chosen
                              # without boxes


def _get(metrics: dict, *keys, default=None):
    for key in keys:
        if not isinstance(metrics, dict) or key not in metrics:
            return default
        metrics = metrics[key]
    return metrics


def majority_f1(run_dir: Path, data_dir: Path, label_fixes: str = "") -> float | None:
    """Weighted F1 on cat3 of answering the training split's most common class for every validation row: the
    floor a trained model must clear (a short run can leave a neural model at it). The labels are the run's: with
    its reviewed label fixes applied, as 04 and 05 score."""
    split_file = run_dir / "validation_split.csv"
    if not (split_file.exists() and (data_dir / "train.csv").exists()):
        return None
    from utils.data import load_dataset
    from utils.metrics import weighted_f1
    from utils.run import default_label_fixes
    ds = load_dataset(data_dir, check_images=False, progress=False,
                      label_fixes=default_label_fixes(data_dir.resolve(), label_fixes))
    split = pd.read_csv(split_file, dtype=str)
    split["cat3"] = ds.train.set_index("id")["cat3"].reindex(split["id"]).to_numpy()
    if split["cat3"].isna().any():  # not this data folder's run
        return None
    train, val = split[split["split"] == "train"], split[split["split"] == "val"]
    if val.empty or train.empty:
        return None
    common = train["cat3"].value_counts().idxmax()
    return weighted_f1(val["cat3"].to_numpy(), np.full(len(val), common, dtype=object))


def headline(run_dir: Path) -> dict:
    """Name -> number (or text) of one run; absent entries stay None."""
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    rows = {}
    meta = Path(cfg["data_dir"]) / "truth" / "generation.json"
    if meta.exists():
        g = json.loads(meta.read_text(encoding="utf-8"))
        rows["rows (train / test), corrupted labels"] = f"{g['n_train']} / {g['n_test']}, {g['corrupted_labels']}"
    singles = {kind: _get(v, "hierarchical", "weighted_f1_cat3") for kind, v in m.get("models", {}).items()}
    singles = {k: v for k, v in singles.items() if v is not None}
    majority = majority_f1(run_dir, Path(cfg["data_dir"]), cfg.get("label_fixes", ""))
    if majority is not None:
        rows["validation: majority class"] = majority
        rows["_neural"] = {k: v for k, v in singles.items() if k in kinds.KINDS and kinds.get(k).neural}
    for kind, value in singles.items():
        rows[f"validation: {kind}"] = value
    if singles:
        best = max(singles, key=singles.get)
        rows["best single model (validation)"] = f"{best} {singles[best]:.3f}"
        rows["_best_single"] = singles[best]
    oof = {mb["model"]: mb["OOF weighted F1 cat3"] for mb in _get(m, "ensemble", "kfold", "models", default=[])}
    for model, value in oof.items():
        rows[f"K-fold OOF: {model}"] = value
    if "ensemble" in oof and len(oof) > 1:
        rows["_oof"] = oof
    weights = _get(m, "ensemble", "kfold", "weights", default={})
    rows["ensemble weights"] = ", ".join(f"{k} {v:.2f}" for k, v in weights.items() if v >= 0.005) or None
    rows["submission (test, hidden labels)"] = _get(m, "ensemble", "submission", "test_weighted_f1_cat3")
    checked = _get(m, "ensemble", "predictor", default={})
    rows["predictor = submission (same cat3 / test rows checked)"] = (
        f"{round(checked['same_cat3_as_submission'] * checked['test_rows'])} / {checked['test_rows']} of "
        f"{checked.get('of_test_rows', checked['test_rows'])}" if "test_rows" in checked else None)
    fixing = _get(m, "data_quality", "label_fixing", default={})
    rows["label suspects: flagged / corrupted"] = (f"{fixing['flagged']} / {fixing['corrupted']}"
                                                   if "flagged" in fixing else None)
    rows["label suspects: precision"] = fixing.get("precision")
    rows["label suspects: recall"] = fixing.get("recall")
    effect = _get(m, "data_quality", "label_fixing_effect", "delta_weighted_f1")
    rows["label fixes applied: Δ weighted F1 (late fusion)"] = effect
    for option in _get(m, "augmentation", "late_fusion", "rows", default=[]):
        if option["option"] != "none":
            rows[f"03, Δ weighted F1: {option['option']}"] = option["Δ weighted F1"]
    choice = run_dir / "tfidf_choice.json"
    if choice.exists():
        chosen = json.loads(choice.read_text(encoding="utf-8"))
        rows["TF-IDF classifier (CV on 04's training rows)"] = f"{chosen['classifier']} {chosen['scores']}"
    adopted = _get(m, "ensemble", "kfold", "adopted")
    if adopted is not None:
        rows["06: imbalance option adopted from 03"] = ", ".join(f"{k}={v}" for k, v in adopted.items()) or "none"
    cam = _get(m, "explanations", "gradcam", default={})
    for name, value in cam.get("peak_inside_object", {}).items():
        if not name.startswith("random"):
            rows[f"Grad-CAM peak in object: {name} (chosen without boxes)"] = value
            rows[f"Grad-CAM peak in object: {name} (recorded defaults)"] = _get(
                cam, "peak_inside_object_with_defaults", name)
    rows["Grad-CAM peak in object: random point"] = _get(cam, "peak_inside_object", "random point")
    return rows


def targets(name: str, rows: dict) -> list[tuple[bool, str]]:
    out = []
    sub, best = rows.get("submission (test, hidden labels)"), rows.get("_best_single")
    if sub is not None and best is not None:
        out.append((sub >= best, f"{name}: submission {sub:.3f} >= best single model's validation {best:.3f}"))
    majority = rows.get("validation: majority class")
    for kind, value in rows.get("_neural", {}).items():
        out.append((value > majority, f"{name}: {kind} validation {value:.3f} > majority class {majority:.3f}"))
    oof = rows.get("_oof")
    if oof:
        best = max((k for k in oof if k != "ensemble"), key=oof.get)
        out.append((oof["ensemble"] >= oof[best], f"{name}: ensemble OOF {oof['ensemble']:.3f} >= its best member's "
                    f"({best}) {oof[best]:.3f}"))
    for what in ("precision", "recall"):
        value = rows.get(f"label suspects: {what}")
        if value is not None:
            out.append((value >= TARGET_LABEL_SUSPECTS, f"{name}: label suspects {what} {value:.3f} >= "
                        f"{TARGET_LABEL_SUSPECTS}"))
    cam = rows.get("Grad-CAM peak in object: image_frozen (chosen without boxes)")
    if cam is not None:
        out.append((cam >= TARGET_GRADCAM, f"{name}: Grad-CAM (CNN, chosen without boxes) {cam:.3f} >= "
                    f"{TARGET_GRADCAM}"))
    return out


def run_names(folders) -> list[str]:
    """Each run's folder name, with as many of its parent folders as it takes to tell runs apart (`peer.py` puts
    every run at <work>/<dataset>/outputs/peer)."""
    parts = [Path(f).resolve().parts for f in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise SystemExit(f"the same run folder twice: {', '.join(map(str, folders))}")


def write_table(runs: dict, keys: list, path: Path) -> None:
    """The table as a CSV; over several runs (seeds, say) the mean and sample standard deviation of each row whose
    every cell is a number."""
    from utils.io import write_csv

    table = pd.DataFrame({name: [round(v, 4) if isinstance(v, float) else v for v in (rows.get(k) for k in keys)]
                          for name, rows in runs.items()}, index=keys)
    numeric = table.apply(lambda row: all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row), axis=1)
    if len(runs) > 1:
        values = table[numeric].astype(float)
        table["mean"] = values.mean(axis=1).round(4)
        table["sd"] = values.std(axis=1, ddof=1).round(4)
    write_csv(table.rename_axis("measure").reset_index(), path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (outputs/<run name>)")
    parser.add_argument("--csv", type=Path, help="also write the table here, a column per run and, with several "
                                                 "runs, their mean and standard deviation where a row is numeric")
    args = parser.parse_args(argv)
    runs = {name: headline(Path(r)) for name, r in zip(run_names(args.runs), args.runs)}
    names = list(runs)
    keys = list(dict.fromkeys(k for rows in runs.values() for k in rows if not k.startswith("_")))

    def cell(value):
        return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key in keys:
        print(f"| {key} | " + " | ".join(cell(runs[n].get(key)) for n in names) + " |")
    print()
    if args.csv:
        write_table(runs, keys, args.csv)
        print(f"wrote {args.csv}")
    missed = 0
    for name, rows in runs.items():
        for ok, line in targets(name, rows):
            print(("met    " if ok else "MISSED ") + line)
            missed += not ok
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
