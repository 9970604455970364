"""Augmentation: EDA over Korean morphemes for text, albumentations for images, and which rows get it.

Augmented copies are made from training rows only (`augment_training_rows` refuses validation rows),
so they can never leak into validation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .text import clean_overview, kiwi

# A small tourism thesaurus for the optional synonym replacement / insertion (off by default: the seed
# found they change meaning; a real run would bring a proper Korean thesaurus).
SYNONYMS = {"맛집": ["음식점", "식당"], "식당": ["음식점", "맛집"], "숙소": ["숙박시설"], "풍경": ["경치", "경관"],
            "경관": ["풍경", "경치"], "체험": ["경험"], "유명": ["이름난"], "여행객": ["관광객", "방문객"],
            "방문객": ["관광객", "여행객"], "아름답": ["예쁘"], "인기": ["호응"], "산책로": ["둘레길"]}
DEFAULT_OPS = ("swap", "delete")


def augmentation_probabilities(labels) -> np.ndarray:
    """The seed's rule: for each class N / n_c, square root, min-max scaled to [0, 1]; one probability per row."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    weight = np.sqrt(len(labels) / counts)
    span = weight.max() - weight.min()
    scaled = (weight - weight.min()) / span if span > 0 else np.ones_like(weight)
    lookup = dict(zip(classes, scaled))
    return np.array([lookup[c] for c in labels])


def augment_text(text: str, rng: np.random.Generator, ops=DEFAULT_OPS, alpha: float = 0.1) -> str:
    """EDA on Kiwi morphemes: random swap and deletion (and, if asked, synonym replacement and insertion)."""
    tokens = [(t.form, t.tag) for t in kiwi().tokenize(clean_overview(text))]
    n = len(tokens)
    if n < 2:
        return text
    k = max(1, int(alpha * n))
    if "synonym" in ops:
        for i in rng.permutation(n)[:k]:
            if tokens[i][0] in SYNONYMS:
                tokens[i] = (str(rng.choice(SYNONYMS[tokens[i][0]])), tokens[i][1])
    if "insert" in ops:
        candidates = [t for t in tokens if t[0] in SYNONYMS]
        for _ in range(k if candidates else 0):
            form, tag = candidates[rng.integers(len(candidates))]
            tokens.insert(int(rng.integers(len(tokens) + 1)), (str(rng.choice(SYNONYMS[form])), tag))
    if "swap" in ops:
        for _ in range(k):
            i, j = rng.integers(len(tokens), size=2)
            tokens[i], tokens[j] = tokens[j], tokens[i]
    if "delete" in ops:
        kept = [t for t in tokens if rng.random() >= alpha]
        tokens = kept or [tokens[int(rng.integers(len(tokens)))]]
    return kiwi().join(tokens)


def augment_training_rows(train: pd.DataFrame, train_idx, val_idx, seed: int = 0, ops=DEFAULT_OPS,
                          alpha: float = 0.1) -> pd.DataFrame:
    """Augmented copies of training rows chosen by `augmentation_probabilities`, never of validation rows.

    Copies get ids `<id>_aug`, keep `source_id`, and their labels; raises if the sets overlap."""
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    if np.intersect1d(train_idx, val_idx).size:
        raise ValueError("training and validation rows overlap: augmentation would leak into validation")
    rng = np.random.default_rng(seed)
    part = train.iloc[train_idx]
    chosen = part[rng.random(len(part)) < augmentation_probabilities(part["cat3"].to_numpy())]
    copies = chosen.copy()
    copies["source_id"] = chosen["id"].to_numpy()
    copies["id"] = [f"{i}_aug" for i in chosen["id"]]
    copies["overview"] = [augment_text(t, rng, ops, alpha) for t in chosen["overview"]]
    assert not set(copies["source_id"]) & set(train.iloc[val_idx]["id"]), "augmented copy of a validation row"
    return copies.reset_index(drop=True)


def image_pipeline(seed: int = 0):
    """Flips, rotation, affine and colour: what the training engine applies to training images."""
    import albumentations as A

    return A.Compose([A.HorizontalFlip(p=0.5), A.Rotate(limit=15, p=0.5),
                      A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), p=0.5),
                      A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.5)], seed=seed)


def seed_pipeline(pipeline, seed: int) -> None:
    """Reseed `pipeline` for one draw, each transform from its own stream: albumentations' Compose.set_random_seed
    hands every transform the same seed, so their p=0.5 coin flips agree and all four fire or none does."""
    pipeline.set_random_seed(seed)
    for j, transform in enumerate(pipeline.transforms):
        transform.set_random_seed(int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))


def augment_image(img, pipeline):
    """An augmented copy of a PIL image."""
    from PIL import Image

    return Image.fromarray(pipeline(image=np.asarray(img))["image"])


def delete_span(text: str, rng: np.random.Generator, p: float = 0.5, low: float = 0.25, high: float = 0.5) -> str:
    """The 9th-place solution's text augmentation: with probability `p`, cut one contiguous span of
    `low`–`high` of the characters (YiyuHong/dacon_tour2022; it applied it to every training batch)."""
    if rng.random() >= p or len(text) < 4:
        return text
    cut = int(rng.uniform(low, high) * len(text))
    start = int(rng.integers(0, len(text) - cut + 1))
    return text[:start] + " " + text[start + cut:]


def augment_text_on_the_fly(text: str, rng: np.random.Generator, ops) -> str:
    """What the end-to-end data path applies to a training row's text: `span` (delete_span) and/or EDA ops."""
    eda = tuple(op for op in ops if op != "span")
    if eda:
        text = augment_text(text, rng, eda)
    return delete_span(clean_overview(text), rng) if "span" in ops else text
