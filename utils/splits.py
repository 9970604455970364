"""The validation split every notebook of a run scores on, and stratified K-fold that survives tiny classes."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split


def _strata(labels: np.ndarray, n_splits: int) -> np.ndarray:
    """Classes with fewer rows than splits are pooled into one stratum, so stratification still works."""
    counts = pd.Series(labels).value_counts()
    small = counts[counts < n_splits].index.astype(str)
    strata = np.asarray(labels).astype(str)
    strata = np.where(np.isin(strata, small), "__rare__", strata)
    return strata


def stratified_split(ids, labels, seed: int = 0, val_fraction: float = 0.2) -> pd.DataFrame:
    """`id,split` (train/val) stratified on `labels`: the validation rows every notebook of a run scores on."""
    strata = _strata(np.asarray(labels), int(round(1 / val_fraction)))
    _, val_idx = train_test_split(np.arange(len(ids)), test_size=val_fraction, random_state=seed, stratify=strata)
    split = np.full(len(ids), "train", dtype=object)
    split[val_idx] = "val"
    return pd.DataFrame({"id": np.asarray(ids), "split": split})


def run_split(ds, seed: int) -> pd.DataFrame:
    """A run's validation split (`id,split`) of a dataset's training rows, stratified on the labels as given (so
    02, which reads them, and the later notebooks, which may read fixed ones, score on the same rows)."""
    return stratified_split(ds.train["id"].to_numpy(), np.asarray(ds.given_cat3), seed)


def kfold(labels, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number per row, stratified on `labels`. Classes with fewer rows than folds are stratified
    together as one pooled stratum: their rows spread over different folds, so each such class is
    validated in as many folds as it has rows and trained on in the others."""
    labels = np.asarray(labels)
    folds = np.zeros(len(labels), dtype=int)
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, val) in enumerate(skf.split(np.zeros(len(labels)), _strata(labels, n_splits))):
        folds[val] = k
    return folds


def stratified_sample(rows: np.ndarray, labels, n: int, seed: int = 0) -> np.ndarray:
    """At most `n` of `rows` (sorted), each class keeping its share (largest remainders, so the shares add up to
    `n`; a class may get none when `n` is below the number of classes); all of them when they are no more than
    `n` (or `n` is 0)."""
    rows = np.asarray(rows)
    if n <= 0 or len(rows) <= n:
        return rows
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(np.asarray(labels)[rows], return_inverse=True)
    exact = np.bincount(inverse) * n / len(rows)
    take = np.floor(exact).astype(int)
    order = np.lexsort((rng.random(len(classes)), -(exact - take)))  # largest remainders, ties in a seeded order
    take[order[:n - take.sum()]] += 1
    keep = [rng.permutation(np.flatnonzero(inverse == c))[:take[c]] for c in range(len(classes))]
    return np.sort(rows[np.concatenate(keep)])
