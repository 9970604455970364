"""Augmentation: the seed's row-selection rule, the EDA operations, and no leak into validation."""
import numpy as np
import pytest

from utils.augment import augment_text, augment_training_rows, augmentation_probabilities
from utils.data import load_dataset
from utils.splits import stratified_split


def test_selection_rule_is_sqrt_inverse_frequency_scaled():
    p = augmentation_probabilities(["a"] * 80 + ["b"] * 15 + ["c"] * 5)
    assert p[0] == 0.0 and p[-1] == 1.0
    expected = (np.sqrt(100 / 15) - np.sqrt(100 / 80)) / (np.sqrt(100 / 5) - np.sqrt(100 / 80))
    assert p[80] == pytest.approx(expected)


def test_swap_and_delete_work_on_morphemes():
    rng = np.random.default_rng(0)
    text = "맛있는 비빔밥과 불고기를 파는 한식당이다. 방문객들에게 인기가 많다."
    out = augment_text(text, rng, ops=("swap", "delete"), alpha=0.2)
    assert out != text and "비빔밥" in out + text
    assert augment_text(text, np.random.default_rng(1), ops=()) .replace(" ", "") == text.replace(" ", "")


def test_augmented_copies_never_reach_validation(tiny_data, tmp_path):
    ds = load_dataset(tiny_data, progress=False, check_images=False)
    is_val = stratified_split(ds.train["id"], ds.train["cat3"], 0)["split"].to_numpy() == "val"
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    copies = augment_training_rows(ds.train, train_idx, val_idx, seed=0)
    val_ids = set(ds.train.iloc[val_idx]["id"])
    assert len(copies) > 0
    assert not set(copies["source_id"]) & val_ids
    assert set(copies["source_id"]) <= set(ds.train.iloc[train_idx]["id"])
    assert not set(copies["id"]) & set(ds.train["id"])
    with pytest.raises(ValueError, match="leak"):
        augment_training_rows(ds.train, np.concatenate([train_idx, val_idx[:1]]), val_idx)
