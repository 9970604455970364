"""The generated dataset: the real schema, real class tree and imbalance, ground truth, determinism."""
import hashlib

import numpy as np
import pandas as pd

from utils.data import class_counts, load_dataset, load_taxonomy
from utils.generate import IMAGE_CAT2, class_counts as scaled_counts, generate_dataset


def _digest(folder):
    h = hashlib.sha256()
    for name in ("train.csv", "test.csv", "truth/label_noise.csv", "truth/boxes.csv",
                 "image/train/TRAIN_00005.jpg", "image/test/TEST_00007.jpg"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def test_schema_matches_the_real_layout(tiny_data):
    train = pd.read_csv(tiny_data / "train.csv", dtype=str)
    test = pd.read_csv(tiny_data / "test.csv", dtype=str)
    sub = pd.read_csv(tiny_data / "sample_submission.csv", dtype=str)
    assert list(train.columns) == ["id", "img_path", "overview", "cat1", "cat2", "cat3"]
    assert list(test.columns) == ["id", "img_path", "overview"] and list(sub.columns) == ["id", "cat3"]
    assert train["id"].iloc[0] == "TRAIN_00000" and train["img_path"].iloc[0] == "./image/train/TRAIN_00000.jpg"
    assert list(sub["id"]) == list(test["id"])
    assert train["overview"].str.contains("<br").any() and train["overview"].str.contains("※").any()
    assert (tiny_data / "GENERATED.txt").read_text(encoding="utf-8").startswith("GENERATED data")


def test_all_128_classes_with_real_imbalance(tiny_data):
    ds = load_dataset(tiny_data, progress=False)
    counts = class_counts(ds.train, ds.taxonomy)
    assert (counts > 0).all()
    assert counts.idxmax() == "한식"
    table = load_taxonomy().table
    default = scaled_counts(table, 4000, 2)
    assert 3900 < default.sum() < 4200 and default.min() == 2
    assert (default < 5).sum() >= 6
    assert (scaled_counts(table, 16986, 2) == table["count"].to_numpy()).all()


def test_ground_truth_is_consistent(tiny_data):
    truth = tiny_data / "truth"
    train = pd.read_csv(tiny_data / "train.csv", dtype=str).set_index("id")
    noise = pd.read_csv(truth / "label_noise.csv", dtype=str)
    assert 0.02 <= len(noise) / len(train) <= 0.04
    assert (noise["true_cat3"] != noise["given_cat3"]).all()
    assert (train.loc[noise["id"], "cat3"].to_numpy() == noise["given_cat3"].to_numpy()).all()
    test_labels = pd.read_csv(truth / "test_labels.csv", dtype=str)
    assert len(test_labels) == len(pd.read_csv(tiny_data / "test.csv"))
    boxes = pd.read_csv(truth / "boxes.csv")
    assert len(boxes) == len(train) + len(test_labels)
    assert ((boxes.x0 >= 0) & (boxes.y0 >= 0) & (boxes.x1 <= boxes.width) & (boxes.y1 <= boxes.height)).all()
    assert ((boxes.x1 > boxes.x0) & (boxes.y1 > boxes.y0)).all()


def test_each_modality_decides_part_of_the_tree():
    tax = load_taxonomy()
    image_share = tax.table.loc[tax.table["cat2"].isin(IMAGE_CAT2), "count"].sum() / tax.table["count"].sum()
    assert 0.3 < image_share < 0.6


def test_deterministic_per_seed(tmp_path, tiny_data):
    again = generate_dataset(tmp_path / "again", seed=0, size="tiny", progress=False)
    other = generate_dataset(tmp_path / "other", seed=1, size="tiny", progress=False)
    assert _digest(again) == _digest(tiny_data)
    assert _digest(other) != _digest(tiny_data)
    assert not np.array_equal(pd.read_csv(other / "train.csv")["cat3"], pd.read_csv(again / "train.csv")["cat3"])
