"""Hard inputs: each gets its own clear error, or the right behaviour."""
import os
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from utils.data import DataValidationError, load_dataset
from utils.features import dataset_fingerprint
from utils.images import MAX_IMAGE_SIDE, load_image

REPO = Path(__file__).resolve().parent.parent


def _edit(folder, name, fn):
    frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
    fn(frame)
    frame.to_csv(folder / name, index=False)


def _error(folder) -> str:
    with pytest.raises(DataValidationError) as info:
        load_dataset(folder, progress=False)
    return str(info.value)


@pytest.mark.parametrize("path", ["../../../../etc/hostname", "/etc/hostname"])
def test_img_path_outside_the_data_folder_is_an_error(small_copy, path):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.__setitem__("img_path", [path] + list(f["img_path"][1:])))
    msg = _error(folder)
    first = pd.read_csv(folder / "train.csv", dtype=str)["id"][0]
    assert f"train.csv row {first}: column 'img_path'" in msg and "outside the data folder" in msg


def test_a_symlink_leading_outside_is_an_error_and_a_fifo_is_never_opened(small_copy, tmp_path):
    folder = small_copy()
    outside = tmp_path / "elsewhere.jpg"
    Image.new("RGB", (32, 32)).save(outside)
    os.symlink(outside, folder / "image/train/LINK.jpg")
    os.mkfifo(folder / "image/train/FIFO.jpg")  # opening it for reading would block forever
    _edit(folder, "train.csv", lambda f: f.__setitem__(
        "img_path", ["./image/train/LINK.jpg", "./image/train/FIFO.jpg"] + list(f["img_path"][2:])))
    msg = _error(folder)
    assert "'./image/train/LINK.jpg' points outside the data folder" in msg
    assert "'./image/train/FIFO.jpg' is not a regular file" in msg


def test_16_bit_images_keep_their_range(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    path = tmp_path / "gradient16.png"
    Image.fromarray(gradient).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_image(path))[..., 0].astype(float)
    assert (pixels == 255).mean() < 0.01  # was 99.6% pure white through convert("RGB")
    assert abs(pixels.mean() - 127.5) < 2 and pixels[:, 0].max() == 0


def test_an_image_edited_in_place_changes_the_cache_key(small_copy, tmp_path):
    folder = small_copy()
    before = dataset_fingerprint(folder, tmp_path / "cache")
    image = sorted((folder / "image/train").glob("*.jpg"))[0]
    data = bytearray(image.read_bytes())
    data[-10] ^= 0xFF  # same size, other content
    stat = image.stat()
    image.write_bytes(bytes(data))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old modification time
    assert image.stat().st_size == stat.st_size
    assert dataset_fingerprint(folder, tmp_path / "cache") != before


def test_header_only_train_csv(small_copy):
    folder = small_copy()
    header = (folder / "train.csv").read_text(encoding="utf-8").splitlines()[0]
    (folder / "train.csv").write_text(header + "\n", encoding="utf-8")
    assert "train.csv: no rows" in _error(folder)


def test_markup_only_overview(small_copy):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.__setitem__("overview", ["<br><br>"] + list(f["overview"][1:])))
    assert "column 'overview' holds only markup" in _error(folder)


def test_ids_with_spaces_and_ids_shared_by_train_and_test(small_copy):
    folder = small_copy()
    train = pd.read_csv(folder / "train.csv", dtype=str)
    test_id = pd.read_csv(folder / "test.csv", dtype=str)["id"][0]
    _edit(folder, "train.csv", lambda f: f.__setitem__("id", [f["id"][1] + " ", *f["id"][1:-1], test_id]))
    msg = _error(folder)
    assert f"column 'id' {train['id'][1] + ' '!r} has spaces around it" in msg
    assert f"row {train['id'][1]}: column 'id' is duplicated" in msg
    assert f"test.csv row {test_id}: column 'id' also appears in train.csv" in msg


def test_labels_in_another_unicode_normalisation_are_read_as_nfc(small_copy):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.__setitem__("cat3", [unicodedata.normalize("NFD", v) for v in f["cat3"]]))
    raw = pd.read_csv(folder / "train.csv", dtype=str)["cat3"][0]
    assert raw != unicodedata.normalize("NFC", raw)  # really NFD on disk
    ds = load_dataset(folder, progress=False)
    assert set(ds.train["cat3"]) <= set(ds.taxonomy.cat3)


def test_utf16_csv_is_named_as_such(small_copy):
    folder = small_copy()
    frame = pd.read_csv(folder / "train.csv", dtype=str)
    frame.to_csv(folder / "train.csv", index=False, encoding="utf-16")
    msg = _error(folder)
    assert "looks like UTF-16" in msg and "UTF-8" in msg


def test_latin1_mojibake_points_at_the_encoding(small_copy):
    folder = small_copy()
    text = (folder / "train.csv").read_text(encoding="utf-8")
    (folder / "train.csv").write_text(text.encode("utf-8").decode("latin-1"), encoding="utf-8")
    msg = _error(folder)
    assert "encoding is the likely cause" in msg


def test_huge_images_are_reduced_while_decoding_and_warned_once(small_copy):
    folder = small_copy()
    big = Image.new("RGB", (MAX_IMAGE_SIDE * 2 + 100, 64), (200, 30, 30))
    paths = sorted((folder / "image/train").glob("*.jpg"))[:2]
    for p in paths:
        big.save(p, format="PNG")  # a PNG named .jpg, as the real data sometimes has
    assert max(load_image(paths[0]).size) <= MAX_IMAGE_SIDE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset(folder, progress=False)
    large = [w for w in caught if "larger than" in str(w.message)]
    assert len(large) == 1 and "2 image(s)" in str(large[0].message)


def test_predictor_checks_its_csv_before_loading_any_model(small_copy, tmp_path):
    folder = small_copy()
    _edit(folder, "test.csv", lambda f: f.pop("overview"))
    cli = [sys.executable, "-m", "utils.predict", "--output-dir", str(tmp_path / "no-runs-here"),
           "--csv", str(folder / "test.csv")]
    out = subprocess.run(cli, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "missing column(s) ['overview']" in out.stderr and "test.csv" in out.stderr
    _edit(folder, "test.csv", lambda f: f.insert(2, "overview", "한식 맛집"))
    _edit(folder, "test.csv", lambda f: f.__setitem__("img_path", ["/etc/hostname"] + list(f["img_path"][1:])))
    out = subprocess.run(cli, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "outside the data folder" in out.stderr


def test_csv_shapes_pandas_accepts_silently(small_copy):
    """Windows line endings and stray blank lines read as the plain file does; a header naming a column twice is
    refused by name (pandas would rename the second 'overview.1' and silently read the first)."""
    from utils.data import load_dataset

    folder = small_copy()
    plain = load_dataset(folder, progress=False, check_images=False).train
    frame = pd.read_csv(folder / "train.csv", dtype=str, keep_default_na=False)
    body = frame.to_csv(index=False, lineterminator="\r\n")
    (folder / "train.csv").write_text(body + "\r\n\r\n", encoding="utf-8")
    windows = load_dataset(folder, progress=False, check_images=False).train
    assert windows[["id", "overview", "cat3"]].equals(plain[["id", "overview", "cat3"]])
    doubled = frame.assign(extra="x").rename(columns={"extra": "overview"})
    doubled.to_csv(folder / "train.csv", index=False)
    assert "train.csv line 1: column 'overview' appears more than once" in _error(folder)
