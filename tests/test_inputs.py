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
    (folder / "train.csv").write_text("\n\n" + doubled.to_csv(index=False), encoding="utf-8")  # blank lines first
    assert "train.csv line 3: column 'overview' appears more than once" in _error(folder)


# ------------------------------------------ other folders' inputs: encodings, taxonomies, blank paths, damaged files, refusals
TREE = 'cat1,cat2,cat3\n패션,의류,티셔츠\n패션,신발,구두\n식품,식품,"사과,배"\n'


def _foreign(folder, **kwargs) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from foreign_data import write

    return write(folder, **kwargs)


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-8-sig", "crlf", "utf-16"])
def test_a_data_folders_taxonomy_reads_in_every_encoding_the_csvs_may_have(tmp_path, encoding):
    """taxonomy.csv is typed by hand in Excel or Notepad: the same encodings as the data's CSVs."""
    from utils.data import load_taxonomy, taxonomy_file

    def dataset_taxonomy(folder):
        return load_taxonomy(taxonomy_file(folder))

    text = TREE.replace("\n", "\r\n") if encoding == "crlf" else TREE
    (tmp_path / "taxonomy.csv").write_bytes(text.encode("utf-8" if encoding == "crlf" else encoding))
    if encoding == "utf-16":
        with pytest.raises(DataValidationError, match="taxonomy.csv: the file looks like UTF-16"):
            dataset_taxonomy(tmp_path)
        return
    assert dataset_taxonomy(tmp_path).records() == [["패션", "의류", "티셔츠"], ["패션", "신발", "구두"],
                                                    ["식품", "식품", "사과,배"]]


def test_every_tree_fault_of_a_taxonomy_is_named_by_the_line_an_editor_shows(tmp_path):
    """Blank lines are skipped by the reader, yet the lines named are the file's own; a cat3 under two cat2s
    names both, an identical row twice is named as a duplicate."""
    from utils.data import load_taxonomy

    path = tmp_path / "taxonomy.csv"
    path.write_text("cat1,cat2,cat3\n\n패션,의류,티셔츠\n패션,신발,티셔츠\n\n식품,의류,쌀\n  \n식품,과일,\n"
                    "패션,신발,구두\n패션,신발,구두\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_taxonomy(path)
    msg = str(info.value)
    assert "taxonomy.csv lines 3, 4: cat3 '티셔츠' is listed more than once, under more than one cat2 " \
           "['신발', '의류']" in msg
    assert "taxonomy.csv lines 3, 6: cat2 '의류' is under more than one cat1 ['식품', '패션']" in msg
    assert "taxonomy.csv line 8: column 'cat3' is empty" in msg
    assert "taxonomy.csv lines 9, 10: cat3 '구두' is listed more than once (the same row repeated)" in msg


def test_every_training_label_missing_from_the_folders_taxonomy_is_named(tmp_path):
    """Distinct missing labels come first, whatever the number of rows listed after them, and the message
    names the folder's own taxonomy.csv, not the encoding (the labels are good Korean)."""
    folder = _foreign(tmp_path / "products", n_train=40, n_test=5, tree="products")
    train = pd.read_csv(folder / "train.csv", dtype=str, encoding="cp949")
    train.loc[:34, ["cat1", "cat2", "cat3"]] = ["패션", "의류", "티셔츠"]
    train.loc[35:38, ["cat1", "cat2", "cat3"]] = ["디지털", "컴퓨터", "노트북"]
    train.loc[39, ["cat1", "cat2", "cat3"]] = ["식품", "식품", "쌀"]
    train.to_csv(folder / "train.csv", index=False, encoding="cp949")
    tree = pd.read_csv(folder / "taxonomy.csv", dtype=str)
    tree[~tree["cat3"].isin(["티셔츠", "쌀"])].to_csv(folder / "taxonomy.csv", index=False)
    msg = _error(folder)
    assert f"train.csv: 36 row(s) have a cat3 that {folder / 'taxonomy.csv'} lacks: ['쌀', '티셔츠']" in msg
    assert "encoding is the likely cause" not in msg


def test_a_blank_or_whitespace_img_path_means_no_photo_in_the_data_and_in_the_predictors_csv(small_copy):
    """As an empty img_path: a place without a photo, described by its text alone (docs/data.md)."""
    from utils.predict import PredictionError, check_inputs, read_places

    folder = small_copy()
    _edit(folder, "test.csv", lambda f: f.__setitem__("img_path", ["", "   ", "\t"] + list(f["img_path"][3:])))
    assert load_dataset(folder, progress=False).photo_counts()["test"] == (7, 10)
    ids, files, texts = read_places(folder / "test.csv")
    assert files[:3] == [None] * 3 and all(files[3:])
    check_inputs(files, texts, ids)
    with pytest.raises(PredictionError, match=f"{ids[2]}: no text and no photo"):
        check_inputs(files, texts[:2] + [" "] + texts[3:], ids)


def test_windows_line_endings_and_blank_lines_inside_a_file_read_as_the_plain_file(tmp_path):
    """A file converted to CRLF throughout (a Windows editor, git autocrlf) also has CRLF inside its multi-line
    overviews; blank lines between records are skipped, and lines are still named as the file has them."""
    from utils.data import TRAIN_COLUMNS

    folder = _foreign(tmp_path / "crlf", n_train=20, n_test=5)
    plain = load_dataset(folder, progress=False, check_images=False)
    train = pd.read_csv(folder / "train.csv", dtype=str, encoding="cp949", keep_default_na=False)
    assert train["overview"].str.contains("\n").all()
    text = (train[:3].to_csv(index=False) + "\n" + train[3:].to_csv(index=False, header=False) + "  \n\n")
    (folder / "train.csv").write_bytes(text.replace("\n", "\r\n").encode("cp949"))
    windows = load_dataset(folder, progress=False, check_images=False)
    assert windows.train[TRAIN_COLUMNS].equals(plain.train[TRAIN_COLUMNS])
    text = text.replace(f"\n{train['id'][7]},", f"\n{train['id'][2]},")
    (folder / "train.csv").write_bytes(text.replace("\n", "\r\n").encode("cp949"))
    lines = [i + 1 for i, line in enumerate(text.split("\n")) if line.startswith(f"{train['id'][2]},")]
    assert lines == [6, 17]  # two lines per record, a blank line after the third
    assert f"row {train['id'][2]}: column 'id' is duplicated (lines 6, 17)" in _error(folder)


def test_an_empty_or_cut_off_csv_is_named_with_what_happened(tmp_path):
    folder = _foreign(tmp_path / "cut", n_train=20, n_test=5)
    good = {name: (folder / name).read_bytes() for name in ("train.csv", "test.csv", "sample_submission.csv")}
    (folder / "sample_submission.csv").write_bytes(b"")
    assert "sample_submission.csv: the file is empty (0 bytes, not even a header)" in _error(folder)
    (folder / "sample_submission.csv").write_bytes(good["sample_submission.csv"])

    data = good["test.csv"]
    start = data.index(b'TEST_00003,./image/test/TEST_00003.jpg,"')
    (folder / "test.csv").write_bytes(data[:start + 60])  # cut inside the quoted overview of row TEST_00003
    line = data[:start].count(b"\n") + 1
    assert f"test.csv line {line}: a quoted value starts there and is never closed" in _error(folder)
    (folder / "test.csv").write_bytes(data)

    for encoding in ("utf-8", "cp949"):
        data = good["train.csv"].decode("cp949").encode(encoding)
        (folder / "train.csv").write_bytes(data[:-2])  # the newline and the last byte of the last character gone
        line = data.count(b"\n")
        assert f"train.csv line {line}: the file ends inside a character: it is cut off" in _error(folder)


def test_a_csv_mixing_two_encodings_names_the_line_where_each_reading_fails(small_copy):
    """Rows pasted from a CP949 file into a UTF-8 one: a line number to look at, not a byte offset."""
    folder = small_copy()
    data = (folder / "train.csv").read_bytes()
    last = data.rstrip(b"\n").rindex(b"\nTRAIN_") + 1
    (folder / "train.csv").write_bytes(data[:last] + data[last:].decode("utf-8").encode("cp949"))
    utf8_line = data[:last].count(b"\n") + 1
    msg = _error(folder)
    assert f"train.csv: cannot be read as UTF-8 (line {utf8_line}:" in msg
    assert "nor as CP949/EUC-KR (line 2:" in msg and "re-save it as 'CSV UTF-8'" in msg


@pytest.mark.parametrize("codec", ["utf-8", "cp949"])
def test_korean_read_in_the_wrong_encoding_is_refused_in_overviews_too(small_copy, codec):
    """Mojibake in test.csv has no labels to give it away; accented Latin text stays text."""
    from utils.predict import read_places

    folder = small_copy()
    latin = ["Crème brûlée, Ã la carte", "Water 25°C", "ÀB test"]  # cp949 would read '°C' and 'ÀB' as one syllable
    _edit(folder, "train.csv", lambda f: f.__setitem__("overview", latin + list(f["overview"][3:])))
    load_dataset(folder, progress=False, check_images=False)
    text = (folder / "test.csv").read_text(encoding="utf-8")
    (folder / "test.csv").write_text(text.encode(codec).decode("latin-1"), encoding="utf-8")
    msg = _error(folder)
    assert "test.csv: column 'overview' of 10 row(s) (TEST_00000, TEST_00001, TEST_00002, ...) is Korean read in " \
           "the wrong encoding" in msg and "re-save the file as UTF-8" in msg
    with pytest.raises(DataValidationError, match="column 'overview' of 10 row"):
        read_places(folder / "test.csv")  # the predictor's CSV mode


def test_extreme_overviews_are_refused_by_row_or_read_whole(small_copy):
    """Invisible characters (a zero-width space) are no text; emoji are; 100,000 characters are read whole."""
    from utils.predict import has_text
    from utils.text import clean_overview

    folder = small_copy()
    _edit(folder, "test.csv", lambda f: f.__setitem__("overview", ["\u200b\u200b", "\u3000\xa0\t", "😀🎉"]
                                                       + list(f["overview"][3:])))
    _edit(folder, "train.csv", lambda f: f.__setitem__("overview", ["가나다 " * 25000] + list(f["overview"][1:])))
    msg = _error(folder)
    assert "1 problem(s)" not in msg and "2 problem(s)" in msg
    assert "test.csv row TEST_00000: column 'overview' holds only invisible characters ('\\u200b\\u200b')" in msg
    assert "test.csv row TEST_00001: column 'overview' is empty or missing" in msg
    assert not has_text("\u200b \u2060") and has_text("😀🎉")
    _edit(folder, "test.csv", lambda f: f.__setitem__("overview", ["한식 맛집"] * 2 + list(f["overview"][2:])))
    ds = load_dataset(folder, progress=False, check_images=False)
    assert len(ds.train["overview"][0]) == 100_000 and len(clean_overview(ds.train["overview"][0])) == 99_999


def test_the_predictor_refuses_each_bad_input_with_one_message(tmp_path, capsys):
    """Photo, text, run folder and CSV are checked before any model loads: exit 2 with the reason, no
    traceback. A half-truncated JPEG is read as far as it goes (as in the data), so only the run stops it."""
    from utils.predict import main

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photo)
    (tmp_path / "half.jpg").write_bytes(photo.read_bytes()[:photo.stat().st_size // 2])
    (tmp_path / "head.jpg").write_bytes(photo.read_bytes()[:20])
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "empty.csv").write_bytes(b"")
    run = ["--run", str(tmp_path / "unfinished")]
    cases = [(["--image", str(tmp_path / "folder.jpg"), "--text", "한식"], "folder.jpg: not a regular file"),
             (["--image", str(tmp_path / "head.jpg"), "--text", "한식"], "head.jpg: cannot be decoded"),
             (["--text", "   "], "input: no text and no photo"),
             (["--text", "\u200b\u200b"], "input: no text and no photo"),
             (["--text", "한식", *run], "unfinished/predictor.json: no trained model found"),
             (["--image", str(tmp_path / "half.jpg"), "--text", "한식", *run], "predictor.json: no trained model"),
             (["--text", "한식", "--run", str(tmp_path / "absent")], "absent: no such run folder"),
             (["--text", "한식", "--run", str(photo)], "photo.jpg: no such run folder"),
             (["--csv", str(tmp_path / "folder.jpg")], "folder.jpg: a folder, not a CSV file"),
             (["--csv", str(tmp_path / "empty.csv")], "empty.csv: the file is empty")]
    for argv, reason in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert reason in err and "Traceback" not in err, (argv, err)


def test_the_page_refuses_invisible_text_a_folder_as_photo_and_an_unfinished_run(tmp_path, capsys):
    import gradio as gr

    from utils.app import answer, main

    with pytest.raises(gr.Error, match="Give a description of the place, a photo, or both"):
        answer(None, None, "\u200b \u3000")
    with pytest.raises(gr.Error, match=r"The photo cannot be read \(not a regular file\)"):
        answer(None, str(tmp_path), "한식")
    assert main(["--run", str(tmp_path)]) == 2
    assert f"{tmp_path / 'predictor.json'}: no trained model found" in capsys.readouterr().err
