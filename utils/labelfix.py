"""Finding wrong labels: taxonomy consistency, class names written in the text, and confident learning."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .data import check_labels
from .taxonomy import LEVELS
from .text import clean_overview

GENERIC_NAMES = {"기타", "성"}  # too generic or too short to count as naming a class


def inconsistent_rows(train: pd.DataFrame, taxonomy) -> list[str]:
    """Rows whose cat1/cat2/cat3 are not one path of the taxonomy (or not in it at all)."""
    return check_labels(train, taxonomy, "train.csv")


def class_name_patterns(taxonomy) -> dict[str, re.Pattern]:
    """For each cat3, a pattern matching its name or the parts of a compound name (`야영장,오토캠핑장`)."""
    patterns = {}
    for name in taxonomy.cat3:
        parts = {name} | {p for p in re.split(r"[/,.()]", name) if len(p) >= 2}
        parts = sorted((p for p in parts if p not in GENERIC_NAMES and len(p) >= 2), key=len, reverse=True)
        if parts:
            patterns[name] = re.compile("|".join(re.escape(p) for p in parts))
    return patterns


def common_names(train: pd.DataFrame, taxonomy, min_rows: int = 4) -> dict[str, tuple[int, float]]:
    """cat3 whose name is a common word in this data, not evidence: at least `min_rows` overviews say it and
    fewer than half of them carry that label (`전시관` said by every museum and gallery). Name -> (rows that say
    it, share of them labelled with it). Measured on the data itself, since which names are ordinary words
    depends on how its texts are written."""
    patterns = class_name_patterns(taxonomy)
    texts = [clean_overview(t) for t in train["overview"]]
    labels = train["cat3"].to_numpy()
    common = {}
    for name, pattern in patterns.items():
        said = np.array([bool(pattern.search(t)) for t in texts], dtype=bool)
        own = float(np.mean(labels[said] == name)) if said.any() else 1.0
        if said.sum() >= min_rows and own < 0.5:
            common[name] = (int(said.sum()), own)
    return common


def text_evidence(train: pd.DataFrame, taxonomy, ignore=()) -> pd.DataFrame:
    """Rows whose overview names another cat3 outright and never its own (e.g. `한식 전문` labelled 서양식);
    names in `ignore` (see `common_names`) are not evidence."""
    ignore = set(ignore)
    patterns = {name: p for name, p in class_name_patterns(taxonomy).items() if name not in ignore}
    rows = []
    for row in train.itertuples(index=False):
        text = clean_overview(row.overview)
        own = patterns.get(row.cat3)
        if own is not None and own.search(text):
            continue
        named = [name for name, pattern in patterns.items() if name != row.cat3 and pattern.search(text)]
        if named:
            match = patterns[named[0]].search(text)
            start = max(0, match.start() - 30)
            rows.append({"id": row.id, "given_cat3": row.cat3, "named_cat3": named[0], "all_named": ", ".join(named),
                         "snippet": text[start:match.end() + 30]})
    return pd.DataFrame(rows, columns=["id", "given_cat3", "named_cat3", "all_named", "snippet"])


def expert_config(cfg):
    """The run's settings for 02's out-of-fold experts: the TF-IDF expert with `label_tfidf_alpha`."""
    from dataclasses import replace

    return replace(cfg, tfidf_alpha=cfg.label_tfidf_alpha, tfidf_classifier="sgd")


def product_of_experts(probs: list[np.ndarray], labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Combine per-modality probabilities as independent experts: p ∝ Π p_m(c) / prior(c)^(M-1).

    Text and image carry largely independent evidence, so their product is far sharper than either."""
    prior = np.bincount(labels, minlength=n_classes) / len(labels) + 1e-6
    log_p = sum(np.log(p + 1e-6) for p in probs) - (len(probs) - 1) * np.log(prior)
    p = np.exp(log_p - log_p.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def find_suspects(ids, given: np.ndarray, oof_p3: np.ndarray, evidence: pd.DataFrame, taxonomy,
                  max_probability: float, min_class_rows: int) -> pd.DataFrame:
    """Rows whose given label the out-of-fold models contradict, ranked.

    Both settings come from the configuration (`label_max_probability`, `label_min_class_rows`).
    Flagged: the out-of-fold models give the given label at most `max_probability` and prefer another class
    (a threshold on the label's own probability, cleanlab's self-confidence: it does not ask the models to be
    sure which class is right, only that the given one is wrong, which weak experts of a small dataset can
    tell far better), or the text names another class and the models prefer that class to the given one.
    Rows of a class with fewer than `min_class_rows` train rows are flagged on text evidence only: holding
    one out leaves its experts one row or none of that class to learn from, so they contradict it whatever
    its label is worth (on the second development dataset the 14 rows ranked most suspect were all such
    correctly labelled rows).
    score = 1 - cleanlab's label quality (self-confidence) of the given label; suggested = the
    predicted class (for text evidence, the class the text names)."""
    from cleanlab.rank import get_label_quality_scores

    ids = np.asarray(ids)
    score = 1.0 - get_label_quality_scores(given, oof_p3, method="self_confidence")
    suggested = oof_p3.argmax(1)
    learnable = np.bincount(given, minlength=oof_p3.shape[1])[given] >= min_class_rows
    flagged = (suggested != given) & (oof_p3[np.arange(len(given)), given] <= max_probability) & learnable
    reason = np.where(flagged, "model", "").astype(object)
    position = {rid: i for i, rid in enumerate(ids)}
    index = {name: i for i, name in enumerate(taxonomy.cat3)}
    p_given = oof_p3[np.arange(len(given)), given]
    for row in evidence.itertuples(index=False):
        i, named = position[row.id], index[row.named_cat3]
        if oof_p3[i, named] > p_given[i]:
            reason[i] = "model+text" if flagged[i] and suggested[i] == named else "text"
            flagged[i], suggested[i] = True, named
    frame = pd.DataFrame({"id": ids[flagged], "given_cat3": np.array(taxonomy.cat3)[given[flagged]],
                          "suggested_cat3": np.array(taxonomy.cat3)[suggested[flagged]],
                          "score": score[flagged].round(4), "evidence": reason[flagged]})
    return frame.sort_values("score", ascending=False).reset_index(drop=True)


def precision_recall(flagged_ids, truth_ids) -> tuple[float, float]:
    flagged, truth = set(flagged_ids), set(truth_ids)
    hit = len(flagged & truth)
    return (hit / len(flagged) if flagged else 0.0), (hit / len(truth) if truth else 0.0)


def fixes_from_suspects(suspects: pd.DataFrame, train: pd.DataFrame, taxonomy, reason: str) -> pd.DataFrame:
    """Suspects as rows of a label-fixes file (`id,field,old,new,reason`), parents kept consistent."""
    current = train.set_index("id")
    rows = []
    for s in suspects.itertuples(index=False):
        new_path = dict(zip(LEVELS, taxonomy.path(s.suggested_cat3)))
        for level in LEVELS:
            old = current.at[s.id, level]
            if old != new_path[level]:
                rows.append({"id": s.id, "field": level, "old": old, "new": new_path[level],
                             "reason": f"{reason} (score {s.score:.2f}, {s.evidence})"})
    return pd.DataFrame(rows, columns=["id", "field", "old", "new", "reason"])
