"""Scores (weighted F1 on cat3 is the contest metric), hierarchical decoding, and the run's metrics.json."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from .io import read_json, write_json
from .taxonomy import DECODE_RULES, LEVELS


def weighted_f1(y_true, y_pred) -> float:
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def hierarchical_decode(probs: dict[str, np.ndarray], taxonomy, rule: str = "product") -> dict[str, np.ndarray]:
    """A consistent path from the three levels' probabilities (the configuration's `decode`). `product`: the most
    probable path, argmax over cat3 of log p3 + log p2(parent) + log p1(grandparent). `sum`: the 9th place's rule,
    argmax of p3 + p2(parent) + p1(grandparent): a confident parent cannot veto a child as a product can."""
    parent2 = taxonomy.parent_of("cat3")
    parent1 = taxonomy.parent_of("cat2")[parent2]
    if rule == "sum":
        score = probs["cat3"] + probs["cat2"][:, parent2] + probs["cat1"][:, parent1]
    elif rule == "product":
        eps = 1e-9
        score = np.log(probs["cat3"] + eps) + np.log(probs["cat2"][:, parent2] + eps) + np.log(probs["cat1"][:, parent1] + eps)
    else:
        raise ValueError(f"decode rule {rule!r}: choose product or sum")
    cat3 = score.argmax(1)
    return {"cat1": parent1[cat3], "cat2": parent2[cat3], "cat3": cat3}


def flat_decode(probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {level: probs[level].argmax(1) for level in LEVELS}


def scores(y: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict[str, float]:
    """Weighted F1 (cat3 is the contest's), macro F1 and accuracy at each level."""
    out = {}
    for level in LEVELS:
        out[f"weighted_f1_{level}"] = weighted_f1(y[level], pred[level])
        out[f"macro_f1_{level}"] = float(f1_score(y[level], pred[level], average="macro", zero_division=0))
        out[f"accuracy_{level}"] = float(accuracy_score(y[level], pred[level]))
    return out


def evaluate(probs: dict[str, np.ndarray], y: dict[str, np.ndarray], taxonomy, rule: str = "product") -> dict:
    """Scores with flat argmax and with hierarchical decoding (by `rule`, recorded as "hierarchical"; both rules'
    weighted F1 on cat3 beside it), and how often flat paths are inconsistent."""
    flat = flat_decode(probs)
    parent2, parent1 = taxonomy.parent_of("cat3"), taxonomy.parent_of("cat2")
    consistent = (parent2[flat["cat3"]] == flat["cat2"]) & (parent1[flat["cat2"]] == flat["cat1"])
    by_rule = {r: weighted_f1(y["cat3"], hierarchical_decode(probs, taxonomy, r)["cat3"]) for r in DECODE_RULES}
    return {"flat": scores(y, flat), "hierarchical": scores(y, hierarchical_decode(probs, taxonomy, rule)),
            "decode": rule, "weighted_f1_cat3_by_decode": by_rule, "flat_consistent_paths": float(consistent.mean())}



def per_class_report(y_true, y_pred, taxonomy, level: str = "cat3") -> pd.DataFrame:
    labels = np.arange(len(taxonomy.classes(level)))
    report = classification_report(y_true, y_pred, labels=labels, target_names=taxonomy.classes(level),
                                   output_dict=True, zero_division=0)
    frame = pd.DataFrame(report).T.drop(index=["accuracy", "macro avg", "weighted avg"], errors="ignore")
    return frame[frame["support"] > 0].sort_values("support", ascending=False)


def confusion_for_largest(y_true, y_pred, taxonomy, level: str = "cat3", top: int = 15):
    """Confusion matrix (row-normalised) restricted to the `top` largest true classes."""
    counts = np.bincount(y_true, minlength=len(taxonomy.classes(level)))
    keep = np.argsort(-counts)[:top]
    matrix = confusion_matrix(y_true, y_pred, labels=keep).astype(float)
    matrix /= np.maximum(matrix.sum(1, keepdims=True), 1)
    return matrix, [taxonomy.classes(level)[i] for i in keep]


def record(name: str, result: dict, config: dict | None, run_dir, section: str = "models") -> dict:
    """Merge one model's result (and its configuration) into the run's metrics.json, atomically."""
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path, default={})
    metrics.setdefault(section, {})[name] = {**result, "config": config or {},
                                             "recorded": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(metrics, path)
    return metrics


def results_table(run_dir, section: str = "models", decode: str = "hierarchical") -> pd.DataFrame:
    """One row per recorded model: the headline scores, sorted by weighted F1 on cat3."""
    metrics = read_json(Path(run_dir) / "metrics.json", default={}).get(section, {})
    rows = []
    for name, result in metrics.items():
        s = result.get(decode) or result.get("flat") or result
        rows.append({"model": name, "weighted_f1_cat3": s.get("weighted_f1_cat3"), "macro_f1_cat3": s.get("macro_f1_cat3"),
                     "accuracy_cat1": s.get("accuracy_cat1"), "accuracy_cat2": s.get("accuracy_cat2"),
                     "accuracy_cat3": s.get("accuracy_cat3"), "train_seconds": result.get("train_seconds")})
    frame = pd.DataFrame(rows)
    return frame.sort_values("weighted_f1_cat3", ascending=False).reset_index(drop=True) if len(frame) else frame


def lift_probs(p3: np.ndarray, taxonomy) -> dict[str, np.ndarray]:
    """cat1/cat2 probabilities as sums of their children's cat3 probabilities (for single-head models)."""
    parent2 = taxonomy.parent_of("cat3")
    parent1 = taxonomy.parent_of("cat2")
    p2 = np.zeros((len(p3), len(taxonomy.cat2)))
    np.add.at(p2.T, parent2, p3.T)
    p1 = np.zeros((len(p3), len(taxonomy.cat1)))
    np.add.at(p1.T, parent1, p2.T)
    return {"cat1": p1, "cat2": p2, "cat3": p3}
