"""The data layer on good inputs and on each bad input, with the clear error each must get."""
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from utils.data import DataValidationError, apply_label_fixes, load_dataset, load_taxonomy
from utils.images import load_image
from utils.text import clean_overview


def _edit(folder, name, fn):
    frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
    fn(frame)
    frame.to_csv(folder / name, index=False)


def _error(folder, **kwargs) -> str:
    with pytest.raises(DataValidationError) as info:
        load_dataset(folder, progress=False, **kwargs)
    return str(info.value)


def test_taxonomy_has_the_real_tree_and_spellings():
    tax = load_taxonomy()
    assert tax.sizes == {"cat1": 6, "cat2": 18, "cat3": 128}
    assert "육상 레포츠" in tax.cat2 and "수상레포츠" in tax.cat3 and "수상레포츠" not in tax.cat2
    assert "복합 레포츠" in tax.cat2 and "복합 레포츠" in tax.cat3
    assert tax.path("야영장,오토캠핑장") == ("레포츠", "육상 레포츠", "야영장,오토캠핑장")
    parents = tax.parent_of("cat3")
    assert tax.cat2[parents[tax.cat3.index("한식")]] == "음식점"


def test_good_dataset_loads_with_all_classes(tiny_data):
    ds = load_dataset(tiny_data, progress=False)
    assert len(ds.train) > 0 and len(ds.test) > 0
    assert ds.labels("cat3").max() < 128 and len(ds.taxonomy.cat3) == 128
    assert ds.truth_dir is not None


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp949", "euc-kr"])
def test_csv_encodings(small_copy, encoding):
    folder = small_copy()
    for name in ("train.csv", "test.csv"):
        frame = pd.read_csv(folder / name, dtype=str)
        frame.to_csv(folder / name, index=False, encoding=encoding)
    ds = load_dataset(folder, progress=False)
    assert ds.train["overview"].str.contains("[가-힣]").all()
    assert set(ds.train["cat1"]) <= set(ds.taxonomy.cat1)


def test_missing_column(small_copy):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.pop("overview"))
    msg = _error(folder)
    assert "train.csv" in msg and "missing column" in msg and "overview" in msg


def test_extra_column(small_copy):
    folder = small_copy()
    _edit(folder, "test.csv", lambda f: f.insert(3, "note", "x"))
    msg = _error(folder)
    assert "test.csv" in msg and "unexpected column" in msg and "note" in msg


def test_duplicate_ids(small_copy):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.__setitem__("id", [f["id"].iloc[0]] * 2 + list(f["id"].iloc[2:])))
    msg = _error(folder)
    assert "train.csv row TRAIN_00000" in msg and "'id' is duplicated" in msg and "lines 2, 5" in msg


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_overview(small_copy, value):
    folder = small_copy()
    _edit(folder, "test.csv", lambda f: f.__setitem__("overview", [value] + list(f["overview"].iloc[1:])))
    msg = _error(folder)
    assert "test.csv row TEST_00000: column 'overview' is empty or missing" in msg


def test_label_outside_taxonomy(small_copy):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.__setitem__("cat3", ["한싞"] + list(f["cat3"].iloc[1:])))
    msg = _error(folder)
    assert "train.csv row TRAIN_00000: column 'cat3' value '한싞' is not one of the 128 cat3" in msg


def test_cat3_with_wrong_parents(small_copy):
    folder = small_copy()

    def wrong(frame):
        frame.loc[0, ["cat1", "cat2", "cat3"]] = ["음식", "음식점", "수상레포츠"]
    _edit(folder, "train.csv", wrong)
    msg = _error(folder)
    assert "train.csv row TRAIN_00000" in msg and "belongs under '레포츠','레포츠소개'" in msg


def test_missing_image(small_copy):
    folder = small_copy()
    (folder / "image/test/TEST_00003.jpg").unlink()
    msg = _error(folder)
    assert "test.csv row TEST_00003: column 'img_path' './image/test/TEST_00003.jpg': file not found" in msg


def test_every_undecodable_image_is_listed(small_copy):
    folder = small_copy()
    for i in (1, 7):
        (folder / f"image/train/TRAIN_{i:05d}.jpg").write_bytes(b"this is not an image" * 10)
    msg = _error(folder)
    assert "2 problem(s)" in msg
    assert "train.csv row TRAIN_00001" in msg and "train.csv row TRAIN_00007" in msg and "cannot be decoded" in msg


def test_odd_but_readable_images_are_converted(small_copy):
    folder = small_copy()
    src = Image.open(folder / "image/train/TRAIN_00000.jpg").convert("RGB")
    src.convert("CMYK").save(folder / "image/train/TRAIN_00001.jpg", "JPEG")
    src.convert("L").save(folder / "image/train/TRAIN_00002.jpg", "JPEG")
    src.save(folder / "image/train/TRAIN_00003.jpg", "PNG")  # PNG named .jpg
    data = (folder / "image/train/TRAIN_00004.jpg").read_bytes()
    (folder / "image/train/TRAIN_00004.jpg").write_bytes(data[: len(data) * 2 // 3])  # truncated
    ds = load_dataset(folder, progress=False)
    for i in range(1, 5):
        img = load_image(ds.train["image_file"].iloc[i])
        assert img.mode == "RGB" and img.size == Image.open(ds.train["image_file"].iloc[i]).size


def test_label_fixes_applied_and_mismatch_is_an_error(small_copy, tmp_path):
    folder = small_copy()
    train = pd.read_csv(folder / "train.csv", dtype=str)
    row = train.iloc[0]
    fixes = tmp_path / "fixes.csv"
    pd.DataFrame([{"id": row.id, "field": "cat3", "old": row.cat3, "new": "한식", "reason": "test"},
                  {"id": row.id, "field": "cat2", "old": row.cat2, "new": "음식점", "reason": "test"},
                  {"id": row.id, "field": "cat1", "old": row.cat1, "new": "음식", "reason": "test"}]
                 ).to_csv(fixes, index=False)
    ds = load_dataset(folder, progress=False, label_fixes=fixes)
    assert ds.fixes_applied == 3 and tuple(ds.train.loc[0, ["cat1", "cat2", "cat3"]]) == ("음식", "음식점", "한식")

    pd.DataFrame([{"id": row.id, "field": "cat3", "old": "not-the-label", "new": "한식", "reason": "x"}]
                 ).to_csv(fixes, index=False)
    with pytest.raises(DataValidationError, match=r"fixes.csv line 2 \(row TRAIN_00000, field 'cat3'\): expected old"):
        apply_label_fixes(train, fixes)

    # a reviewer's note that spans two lines, then a blank line: the fault is named on the line an editor shows
    fixes.write_text("id,field,old,new,reason\n"
                     f'{row.id},cat2,{row.cat2},음식점,"photo shows a restaurant,\nnot a shop"\n\n'
                     f"{row.id},cat3,not-the-label,한식,x\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"fixes.csv line 5 \(row TRAIN_00000, field 'cat3'\): expected old"):
        apply_label_fixes(train, fixes)


def test_clean_overview():
    raw = "첫 줄<br>둘째 줄<br />\n&lt;서울 명소&gt; &amp;lt;br&amp;gt;끝&nbsp;※ 영업시간 : 10:00"
    assert clean_overview(raw) == "첫 줄 둘째 줄 <서울 명소> 끝 ※ 영업시간 : 10:00"


def test_content_morphemes_are_kept_on_disk_for_the_next_process(tmp_path, monkeypatch):
    """01's analysis serves the TF-IDF models and 06's keyword model in later processes, without Kiwi."""
    from utils import text

    monkeypatch.setattr(text, "_disk_path", lambda cache_dir: tmp_path / "content.json")
    for cache in ("_CONTENT_CACHE", "_LENGTHS", "_NOUNS", "_DISK"):
        monkeypatch.setattr(text, cache, {})
    texts = ["서울 종로구의 한정식 식당이다.", "바닷가 오토캠핑장에서 캠핑을 즐긴다."]
    text.prime_content_morphemes(texts, tmp_path)
    first = [text.content_morphemes(t) for t in texts]
    nouns = text.noun_candidates(texts)
    assert "한정식" in first[0] and "오토캠핑장" in nouns[1] and (tmp_path / "content.json").exists()
    for cache in ("_CONTENT_CACHE", "_NOUNS", "_DISK"):  # a new process: memory empty, the file is there
        monkeypatch.setattr(text, cache, {})
    monkeypatch.setattr(text, "kiwi", lambda: (_ for _ in ()).throw(AssertionError("Kiwi ran again")))
    text.prime_content_morphemes(texts, tmp_path)
    assert [text.content_morphemes(t) for t in texts] == first and text.noun_candidates(texts) == nouns


def _taxonomy_error(tmp_path, text: str) -> str:
    path = tmp_path / "taxonomy.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_taxonomy(path)
    return str(info.value)


def test_a_taxonomy_that_is_not_a_strict_tree_is_refused_naming_each_line(tmp_path):
    msg = _taxonomy_error(tmp_path, "cat1,cat2,cat3\n패션,의류,티셔츠\n식품,의류,쌀\n패션,신발,티셔츠\n, 신발 ,구두\n")
    assert "lines 2, 4: cat3 '티셔츠' is listed more than once" in msg
    assert "lines 2, 3: cat2 '의류' is under more than one cat1 ['식품', '패션']" in msg
    assert "line 5: column 'cat1' is empty" in msg and "line 5: column 'cat2' ' 신발 ' has spaces around it" in msg


def test_a_taxonomy_without_its_columns_is_refused(tmp_path):
    assert "taxonomy.csv: missing column(s) ['cat2']" in _taxonomy_error(tmp_path, "cat1,cat3\n식품,쌀\n")


def test_a_data_folders_own_taxonomy_replaces_the_bundled_tree(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from foreign_data import write

    folder = write(tmp_path / "products", n_train=40, n_test=10, tree="products")
    ds = load_dataset(folder, progress=False)
    assert ds.taxonomy.sizes == {"cat1": 3, "cat2": 5, "cat3": 10}
    assert ds.taxonomy.path("사과,배") == ("식품", "식품", "사과,배")  # a shallower branch repeats its names
    assert load_taxonomy().digest != ds.taxonomy.digest
    (folder / "taxonomy.csv").unlink()  # without it the rows are not labels of the Dacon tree
    assert "is not one of the 128 cat3 of the taxonomy" in _error(folder)


def test_an_empty_img_path_means_no_photo_but_a_missing_file_stays_an_error(small_copy):
    folder = small_copy()
    _edit(folder, "train.csv", lambda f: f.__setitem__("img_path", [""] * 10 + list(f["img_path"][10:])))
    _edit(folder, "test.csv", lambda f: f.__setitem__("img_path", [" "] + list(f["img_path"][1:])))
    ds = load_dataset(folder, progress=False)
    assert ds.photo_counts() == {"train": (20, 30), "test": (9, 10)} and ds.has_photos
    assert ds.train["image_file"][:10].isna().all() and ds.train["image_file"][10:].notna().all()
    (folder / "image/train/TRAIN_00012.jpg").unlink()
    assert "row TRAIN_00012: column 'img_path' './image/train/TRAIN_00012.jpg': file not found" in _error(folder)


def test_lines_with_an_unquoted_comma_are_named_not_shifted(tmp_path):
    one = _taxonomy_error(tmp_path, "cat1,cat2,cat3\n패션,의류,티셔츠\n식품,과일,사과,배\n")
    assert "Expected 3 fields in line 3, saw 4" in one and "must be quoted" in one
    every = _taxonomy_error(tmp_path, "cat1,cat2,cat3\n식품,과일,사과,배\n")  # pandas would shift it into an index
    assert "every line has more fields than the header" in every


def test_the_mixed_foreign_dataset_loads_with_the_real_tree_and_its_ground_truth_holds(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from foreign_data import write_mixed

    folder = write_mixed(tmp_path / "mixed", n_train=120, n_test=30, noise=0.05)
    ds = load_dataset(folder, progress=False)
    assert ds.taxonomy.digest == load_taxonomy().digest and ds.truth_dir is not None  # real names, the real tree
    noise = pd.read_csv(folder / "truth/label_noise.csv")
    train = ds.train.set_index("id")
    assert len(noise) == 6 and (noise["true_cat3"] != noise["given_cat3"]).all()
    assert (train.loc[noise["id"], "cat3"].to_numpy() == noise["given_cat3"].to_numpy()).all()
    parent = dict(zip(ds.taxonomy.cat3, (ds.taxonomy.path(c)[1] for c in ds.taxonomy.cat3)))
    assert all(parent[a] == parent[b] for a, b in zip(noise["true_cat3"], noise["given_cat3"]))  # a sibling
    boxes = pd.read_csv(folder / "truth/boxes.csv").set_index("id")
    for rid in ("TRAIN_00000", "TEST_00007"):
        split = "train" if rid.startswith("TRAIN") else "test"
        width, height = Image.open(folder / "image" / split / f"{rid}.jpg").size
        b = boxes.loc[rid]
        assert (b.width, b.height) == (width, height) and 0 <= b.x0 < b.x1 <= width and 0 <= b.y0 < b.y1 <= height
    evidence = pd.read_csv(folder / "truth/evidence.csv")
    assert (evidence["text_says_cat3"] | evidence["photo_shows_cat3"]).all() and len(evidence) == 150

    text_only = write_mixed(tmp_path / "text-only", n_train=120, n_test=30, no_photo=1.0)
    ds = load_dataset(text_only, progress=False)
    assert ds.train["image_file"].isna().all() and ds.test["image_file"].isna().all()
    assert not any((text_only / "image" / "train").iterdir())
    evidence = pd.read_csv(text_only / "truth/evidence.csv")
    assert evidence["text_says_cat3"].all() and not evidence["photo_shows_cat3"].any()  # the text says every class


def test_the_mixed_generators_own_posterior_reads_every_place_back_and_bounds_what_any_model_scores(tmp_path):
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(Path(__file__).parent), str(root / "benchmarks")]
    from foreign_ceiling import measure, photo_shapes
    from foreign_data import mixed_posterior, mixed_words, write_mixed

    folder = write_mixed(tmp_path / "mixed", n_train=200, n_test=60, noise=0.05)
    test = pd.read_csv(folder / "test.csv")
    words, cat2 = mixed_words(test["overview"][0])
    assert words and cat2 in {"음식점", "숙박시설", "자연관광지", "역사관광지", "육상 레포츠"}
    truth = pd.read_csv(folder / "truth/test_labels.csv")["cat3"]
    shapes = photo_shapes(test, truth, pd.read_csv(folder / "truth/evidence.csv"))
    shown = next(i for i, s in enumerate(shapes) if s != "star")
    posterior = mixed_posterior(test["overview"][shown], shapes[shown])
    assert posterior[truth[shown]] == 1.0  # the photo's shape names the sibling
    text_only = mixed_posterior(test["overview"][shown], None)
    assert abs(sum(text_only.values()) - 1) < 1e-9 and sum(v > 0 for v in text_only.values()) > 1
    with pytest.raises(ValueError, match="not a sentence of the mixed generator"):
        mixed_words("아무 문장이나 씁니다.<br>※ 음식점 문의")
    rows = {(r["system"].split(" ")[0], r["measure"]): r["value"] for r in measure(folder, None, 0.05)}
    bayes, char = rows[("Bayes-optimal", "test weighted F1")], rows[("char", "test weighted F1")]
    text_alone = rows[("Bayes-optimal,", "test weighted F1")]
    assert bayes > 0.95 and bayes > max(text_alone, char)  # the photo's shape is read exactly; the text guesses
    assert rows[("Bayes-optimal", "label suspects recall (> 0.5)")] >= 0.8
