"""K-fold out-of-fold predictions, ensemble weights fitted on them, and the contest submission."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .data import LEVELS
from .experiments import fit_model, model_data
from .io import atomic_path, write_csv
from .metrics import hierarchical_decode, weighted_f1
from .progress import bar
from .training import TimeBudgetExceeded


def kfold_predictions(kind: str, ds, cfg, folds: np.ndarray, seeds, checkpoints_dir, run_dir, tag: str = "kfold",
                      budget=None) -> dict:
    """Out-of-fold probabilities for every train row and fold-averaged test probabilities.

    Every (seed, fold) unit lives in checkpoints_dir/<tag>/<kind>/seed<s>/fold<k>: rerunning skips finished
    units and resumes an interrupted one; a unit trained under other folds or settings is retrained, never
    reused. Saved to <run>/oof/<tag>_<kind>.npz. `checkpoints` lists exactly this call's units.
    `budget` (a training.TimeBudget): stop cleanly before it runs out, naming the units that remain."""
    n_train, n_test = len(ds.train), len(ds.test)
    sizes = ds.taxonomy.sizes
    oof = {level: np.zeros((n_train, sizes[level])) for level in LEVELS}
    test = {level: np.zeros((n_test, sizes[level])) for level in LEVELS}
    test_idx = np.arange(n_train, n_train + n_test)
    data = model_data(ds, cfg, [kind])
    fold_scores, checkpoints = [], []
    n_folds = int(folds.max()) + 1
    units = [(seed, k) for seed in seeds for k in range(n_folds)]
    for i, (seed, k) in enumerate(bar(units, f"{kind}: seeds x folds")):
        train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        try:
            trained = fit_model(kind, data, train_idx, val_idx, ds, cfg,
                                Path(checkpoints_dir) / tag / kind / f"seed{seed}", f"fold{k}", seed,
                                stage="kfold", budget=budget)
        except TimeBudgetExceeded as exc:
            left = ", ".join(f"seed {s} fold {f}" for s, f in units[i:])
            raise TimeBudgetExceeded(f"{exc}. {kind}: {len(units) - i} of {len(units)} units remain ({left}); "
                                     f"rerun the same command to continue") from None
        val_probs, test_probs = trained.probabilities(val_idx), trained.probabilities(test_idx)
        for level in LEVELS:
            oof[level][val_idx] += val_probs[level] / len(seeds)
            test[level] += test_probs[level] / (len(seeds) * n_folds)
        pred = hierarchical_decode(val_probs, ds.taxonomy, cfg.decode)["cat3"]
        fold_scores.append(weighted_f1(ds.labels("cat3")[val_idx], pred))
        if trained.checkpoint is not None:
            checkpoints.append(trained.checkpoint)
    path = Path(run_dir) / "oof" / f"{tag}_{kind}.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"oof_{k}": v for k, v in oof.items()}, **{f"test_{k}": v for k, v in test.items()},
                                folds=folds, fold_scores=np.array(fold_scores))
    return {"oof": oof, "test": test, "fold_scores": fold_scores, "checkpoints": checkpoints}


FAMILIES = {"text": ("text_tfidf", "text_frozen", "text_finetuned"),
            "image": ("image_frozen", "image_finetuned", "image_vit"),
            "multimodal": ("late_fusion", "fusion_transformer")}


def choose_members(results: pd.DataFrame, margin: float) -> tuple[list[str], pd.DataFrame]:
    """The K-fold members this run's own validation results call for: per family (text, image, multimodal) the
    best model by validation weighted F1, or, among the models within `margin` of that best, the one that trained
    fastest (a K-fold member trains once per fold and seed). Returns the kinds and the table behind the choice."""
    rows = []
    for family, kinds in FAMILIES.items():
        scored = results[results["model"].isin(kinds)]
        if scored.empty:
            continue
        best = scored["weighted_f1_cat3"].max()
        near = scored[scored["weighted_f1_cat3"] >= best - margin]
        pick = near.sort_values(["train_seconds", "weighted_f1_cat3"], ascending=[True, False]).iloc[0]["model"]
        for r in scored.itertuples():
            rows.append({"family": family, "model": r.model, "validation weighted F1 cat3": r.weighted_f1_cat3,
                         "train seconds": r.train_seconds, "within margin of the best": r.weighted_f1_cat3 >= best - margin,
                         "member": r.model == pick})
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError("kfold_models=auto chooses from the validation results of notebooks 04 and 05 "
                         "(metrics.json of this run), and there are none: run them first or name the members "
                         "(--set kfold_models=text_tfidf,fusion_transformer)")
    return table.loc[table["member"], "model"].tolist(), table


def blend(members: list[dict], weights) -> dict:
    return {level: sum(w * m[level] for w, m in zip(weights, members)) for level in members[0]}


def fit_weights(oof_members: list[dict], y3: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the out-of-fold log loss of cat3 (smooth, unlike F1)."""
    stack = np.stack([m["cat3"] for m in oof_members])

    def loss(theta):
        w = np.exp(theta - theta.max())
        w /= w.sum()
        p = np.tensordot(w, stack, axes=1)[np.arange(len(y3)), y3]
        return -np.log(p + 1e-9).mean()

    result = minimize(loss, np.zeros(len(oof_members)), method="Nelder-Mead", options={"xatol": 1e-4, "maxiter": 2000})
    w = np.exp(result.x - result.x.max())
    return w / w.sum()


def fold_spread(probs: dict, y3: np.ndarray, folds: np.ndarray, taxonomy, rule: str = "product") -> tuple[float, float, float]:
    """Out-of-fold weighted F1 of cat3 over all rows, and its mean and standard deviation across folds."""
    pred = hierarchical_decode(probs, taxonomy, rule)["cat3"]
    per_fold = [weighted_f1(y3[folds == k], pred[folds == k]) for k in range(int(folds.max()) + 1)]
    return weighted_f1(y3, pred), float(np.mean(per_fold)), float(np.std(per_fold))


def write_submission(ds, test_probs: dict, path, rule: str = "product") -> pd.DataFrame:
    """`id,cat3` in test.csv order, every label one of the 128, written atomically."""
    cat3 = ds.taxonomy.decode("cat3", hierarchical_decode(test_probs, ds.taxonomy, rule)["cat3"])
    submission = pd.DataFrame({"id": ds.test["id"].to_numpy(), "cat3": cat3})
    assert list(submission["id"]) == list(ds.sample_submission["id"])
    assert submission["cat3"].isin(ds.taxonomy.cat3).all()
    write_csv(submission, path)
    return submission


def score_against_truth(ds, submission: pd.DataFrame) -> float | None:
    """Weighted F1 of a submission against the bundled data's hidden test labels; None on real data."""
    if ds.truth_dir is None:
        return None
    truth = pd.read_csv(ds.truth_dir / "test_labels.csv", dtype=str).set_index("id").loc[submission["id"], "cat3"]
    return weighted_f1(truth.to_numpy(), submission["cat3"].to_numpy())
