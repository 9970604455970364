"""Which out-of-fold experts and which flagging rule find the corrupted labels (02), on the generated datasets.

For each dataset and training seed, trains (or reuses) the K-fold experts on 02's folds with 02's settings, then
prints precision and recall of the flagged rows against the dataset's list of corrupted labels, for every
combination of experts that includes the TF-IDF expert and for both rules:

* `max_probability` (02's rule): the experts' product gives the given label at most t and prefers another class;
* `confidence` (the rule before): the experts' preferred class differs from the label with probability >= t.

Text evidence and `label_min_class_rows` apply as in 02. The table's last column is the lower of precision and
recall over every dataset (the target is 0.6 for both, on both datasets).

    .venv/bin/python benchmarks/label_suspects.py                         # bundled and second, seeds 0 and 1
    .venv/bin/python benchmarks/label_suspects.py --sizes second --seeds 0

`--runs RUN ...` trains nothing: from finished runs' saved out-of-fold experts (02's and 06's K-fold members) it
writes benchmarks/results/label-suspects-ceiling.csv, the most any threshold on the experts' ranking can give: the
precision (= recall) of its top k rows, k the number of corrupted labels. Below 0.8 there, no threshold reaches
0.8 for both; only better experts or other evidence (02's text evidence) can. Beside it,
label-suspects-thresholds.csv: 02's own rule at each `label_max_probability` on each run; and cleanlab's estimate
of the number of label issues from 02's experts (`num_label_issues`), which could set a threshold per run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import labelfix  # noqa: E402
from utils.ensemble import kfold_predictions  # noqa: E402
from utils.run import start  # noqa: E402
from utils.splits import kfold  # noqa: E402

SCORES = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")  # cleanlab's; 02 uses the first
RULES = {"max_probability": (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01),
         "confidence": (0.8, 0.9, 0.95, 0.98)}


def experts_of(size: str, seed: int, kinds: list[str]) -> dict:
    """Out-of-fold cat3 probabilities of each expert, trained with training seed `seed` on 02's folds (the run's
    seed); the units of seed 0 are 02's own when they exist."""
    with contextlib.redirect_stdout(io.StringIO()):
        run = start("demo", "", "", 0, "", {"data_size": size})
        ds = run.dataset(fixed=False)
    cfg, given = run.cfg, ds.labels("cat3")
    folds = kfold(given, cfg.n_folds, cfg.seed)
    tag = "label_fixing" if seed == cfg.seed else f"label_fixing-seed{seed}"
    probs = {}
    for kind in kinds:
        with contextlib.redirect_stdout(io.StringIO()):
            probs[kind] = kfold_predictions(kind, ds, labelfix.expert_config(cfg), folds, [seed], run.checkpoints,
                                            run.dir, tag=tag)["oof"]["cat3"]
    noise = pd.read_csv(ds.truth_dir / "label_noise.csv", dtype=str)
    evidence = labelfix.text_evidence(ds.train, ds.taxonomy, ignore=labelfix.common_names(ds.train, ds.taxonomy))
    return {"ds": ds, "cfg": cfg, "given": given, "probs": probs, "evidence": evidence,
            "bad": ds.train["id"].isin(noise["id"]).to_numpy()}


def precision_recall(case: dict, combo: tuple, rule: str, t: float) -> tuple[float, float]:
    ds, given = case["ds"], case["given"]
    oof = labelfix.product_of_experts([case["probs"][k] for k in combo], given, len(ds.taxonomy.cat3))
    if rule == "max_probability":
        suspects = labelfix.find_suspects(ds.train["id"], given, oof, case["evidence"], ds.taxonomy, t,
                                          case["cfg"].label_min_class_rows)
    else:  # the earlier rule, from the same pieces: a sure other class, or text evidence
        text_only = labelfix.find_suspects(ds.train["id"], given, oof, case["evidence"], ds.taxonomy, -1.0,
                                           case["cfg"].label_min_class_rows)
        learnable = np.bincount(given, minlength=oof.shape[1])[given] >= case["cfg"].label_min_class_rows
        sure = (oof.argmax(1) != given) & (oof.max(1) >= t) & learnable
        suspects = pd.DataFrame({"id": np.concatenate([text_only["id"], ds.train["id"].to_numpy()[sure]])})
    flagged = ds.train["id"].isin(suspects["id"]).to_numpy()
    hits = int((flagged & case["bad"]).sum())
    return hits / max(int(flagged.sum()), 1), hits / int(case["bad"].sum())


def _saved(run_dir: Path) -> dict:
    """A finished run's training labels as 02 read them, its corrupted rows, its saved out-of-fold predictions and
    02's figures."""
    import json

    from utils.data import load_dataset

    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    data = Path(cfg["data_dir"])
    ds = load_dataset(data, check_images=False, progress=False)  # the labels as given, as 02's experts read them
    bad = ds.train["id"].isin(pd.read_csv(data / "truth" / "label_noise.csv", dtype=str)["id"]).to_numpy()
    oof = {f.stem: np.load(f)["oof_cat3"] for f in sorted((run_dir / "oof").glob("*.npz"))}
    experts = [oof[k] for k in oof if k.startswith("label_fixing_")]
    if not experts or not bad.any():
        raise SystemExit(f"{run_dir}: needs 02's saved experts (oof/label_fixing_*.npz) and corrupted labels listed "
                         f"in {data / 'truth' / 'label_noise.csv'}")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {"ds": ds, "data": data, "run": run_dir.name, "given": ds.labels("cat3"), "bad": bad, "oof": oof,
            "experts": experts, "cfg": cfg, "fixing": metrics.get("data_quality", {}).get("label_fixing", {})}


def ceiling(saved: dict) -> list[dict]:
    """Break-even precision = recall of ranking a run's training rows by the experts' probability of the given
    label, for 02's experts and for them with each of 06's K-fold members as one more expert."""
    given, bad, oof, experts, fixing = (saved[k] for k in ("given", "bad", "oof", "experts", "fixing"))
    taxonomy = saved["ds"].taxonomy
    combos = {"02's experts": experts}
    combos.update({f"02's experts x K-fold {k[len('kfold_'):]}": experts + [oof[k]]
                   for k in oof if k.startswith("kfold_")})
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    present = np.unique(given)  # cleanlab counts over the classes the labels use
    mine = labelfix.product_of_experts(experts, given, len(taxonomy.cat3))[:, present]
    estimated = int(num_label_issues(np.searchsorted(present, given), mine / mine.sum(1, keepdims=True)))
    rows = []
    for name, probs in combos.items():
        p = labelfix.product_of_experts(probs, given, len(taxonomy.cat3))
        methods = SCORES if name == "02's experts" else SCORES[:1]
        for method in methods:
            quality = get_label_quality_scores(given, p, method=method)
            ranked = np.argsort(quality, kind="stable")
            rows.append({"dataset": saved["data"].name, "run": saved["run"], "experts": name, "ranked by": method,
                         "corrupted": int(bad.sum()),
                         "break-even P = R": round(float(bad[ranked[:bad.sum()]].mean()), 3),
                         "cleanlab's estimated issues (02's experts)": estimated,
                         "02's P / R (text evidence included)": f"{fixing.get('precision', float('nan')):.3f} / "
                                                                f"{fixing.get('recall', float('nan')):.3f}"})
    return rows


def thresholds(saved: dict) -> list[dict]:
    """02's rule on a run's saved experts at each threshold (text evidence and `label_min_class_rows` as in 02):
    where each dataset's precision and recall meet."""
    ds, given, bad, cfg = saved["ds"], saved["given"], saved["bad"], saved["cfg"]
    oof = labelfix.product_of_experts(saved["experts"], given, len(ds.taxonomy.cat3))
    evidence = labelfix.text_evidence(ds.train, ds.taxonomy, ignore=labelfix.common_names(ds.train, ds.taxonomy))
    rows = []
    for t in sorted(set(RULES["max_probability"]) | {0.007, 0.02}):
        suspects = labelfix.find_suspects(ds.train["id"], given, oof, evidence, ds.taxonomy, t,
                                          cfg["label_min_class_rows"])
        flagged = ds.train["id"].isin(suspects["id"]).to_numpy()
        hits = int((flagged & bad).sum())
        rows.append({"dataset": saved["data"].name, "run": saved["run"], "label_max_probability": t,
                     "flagged": int(flagged.sum()),
                     "corrupted": int(bad.sum()), "precision": round(hits / max(int(flagged.sum()), 1), 3),
                     "recall": round(hits / int(bad.sum()), 3)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, help="finished run folders: the ceiling, nothing trained")
    parser.add_argument("--sizes", default="default,second", help="generated datasets (data_size)")
    parser.add_argument("--seeds", default="0,1", help="training seeds of the experts")
    parser.add_argument("--experts", default="text_tfidf,image_frozen,late_fusion")
    args = parser.parse_args(argv)
    if args.runs:
        from utils.io import write_csv

        runs = [_saved(run) for run in args.runs]
        for name, measure in (("ceiling", ceiling), ("thresholds", thresholds)):
            table = pd.DataFrame([row for saved in runs for row in measure(saved)])
            write_csv(table, Path(__file__).resolve().parent / "results" / f"label-suspects-{name}.csv")
            print(table.to_string(index=False))
        return 0
    sizes, seeds = args.sizes.split(","), [int(s) for s in args.seeds.split(",")]
    kinds = args.experts.split(",")
    cases = {(size, seed): experts_of(size, seed, kinds) for size in sizes for seed in seeds}
    others = [k for k in kinds if k != "text_tfidf"]
    combos = [("text_tfidf", *c) for n in range(1, len(others) + 1) for c in itertools.combinations(others, n)]
    names = [f"{size} seed {seed}" for size, seed in cases]
    print("| experts | rule | t | " + " | ".join(f"{n}: P / R" for n in names) + " | lowest |")
    print("|---|---|---|" + "---|" * len(names) + "---|")
    for combo, (rule, levels) in itertools.product(combos, RULES.items()):
        for t in levels:
            scores = [precision_recall(case, combo, rule, t) for case in cases.values()]
            low = min(min(s) for s in scores)
            print(f"| {' x '.join(combo)} | {rule} | {t} | " + " | ".join(f"{p:.3f} / {r:.3f}" for p, r in scores)
                  + f" | {'**' if low >= 0.6 else ''}{low:.3f}{'**' if low >= 0.6 else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
