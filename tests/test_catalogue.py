"""Tagging a whole catalogue (utils.catalogue through `python -m utils.predict --csv --out`): the same bytes after a
kill -9 and a rerun, across shards and a merge, from CSV or Parquet; bad rows named, never fatal."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from utils.catalogue import CatalogueError, Parts, catalogue_chunks, summary_path
from utils.generate import generate_catalogue

REPO = Path(__file__).resolve().parent.parent
CHUNK = "200"


@pytest.fixture(scope="module")
def run(untrained_run) -> Path:
    """The tags need not be right, only the same every way the job runs."""
    return untrained_run


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    folder = generate_catalogue(tmp_path_factory.mktemp("catalogue"), rows=1100, seed=3, size="tiny", photos=30,
                                progress=False)
    return folder / "catalogue.csv"


def tag(run, source, out, *extra) -> int:
    from utils.predict import main

    return main(["--run", str(run), "--csv", str(source), "--out", str(out), "--chunk-rows", CHUNK, *extra])


@pytest.fixture(scope="module")
def whole(run, catalogue, tmp_path_factory) -> Path:
    """The catalogue tagged in one uninterrupted run: the file every other way must reproduce."""
    out = tmp_path_factory.mktemp("whole") / "tags.csv"
    assert tag(run, catalogue, out) == 0
    return out


def test_one_run_tags_every_row_in_order_and_writes_its_summary(whole, catalogue):
    tags, places = pd.read_csv(whole, dtype=str, keep_default_na=False), pd.read_csv(catalogue, dtype=str)
    assert list(tags["id"]) == list(places["id"]) and tags["hashtags"].str.startswith("#").all()
    assert (tags["cat3"] != "").all() and (tags["note"] == "").all()
    summary = json.loads(summary_path(whole).read_text(encoding="utf-8"))
    assert (summary["rows"], summary["tagged"], summary["refused"]) == (1100, 1100, 0)
    assert not Path(str(whole) + ".parts").exists()  # the parts go once joined
    assert pd.read_csv(whole.with_name("tags.refused.csv")).empty


def test_a_job_killed_half_way_continues_to_the_same_bytes(run, catalogue, whole, tmp_path):
    out = tmp_path / "tags.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([sys.executable, "-m", "utils.predict", "--run", str(run), "--csv", str(catalogue),
                            "--out", str(out), "--chunk-rows", CHUNK], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts, deadline = Parts(out), time.monotonic() + 240
    while not parts.done(1) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    finished = [i for i in range(6) if parts.done(i)]
    assert finished and len(finished) < 6 and not out.exists(), finished  # killed between its first and last chunk
    from utils.catalogue import tag_catalogue
    from utils.predict import MODEL_CARD, Predictor

    predictor, tagged = Predictor(run), []
    original = predictor.predict
    predictor.predict = lambda images, *a, **k: tagged.append(len(images)) or original(images, *a, **k)
    tag_catalogue(lambda: predictor, catalogue, out, run / MODEL_CARD, chunk_rows=int(CHUNK), log=lambda _: None)
    assert sum(tagged) == 1100 - 200 * len(finished)  # continued after the finished chunks, not from the start
    assert out.read_bytes() == whole.read_bytes()
    assert tag(run, catalogue, out) == 0  # a third time: nothing to do


def test_two_shards_and_a_merge_give_the_single_runs_file(run, catalogue, whole, tmp_path, capsys):
    out = tmp_path / "tags.csv"
    assert tag(run, catalogue, out, "--shard", "2/2") == 0
    assert not out.exists()
    assert tag(run, catalogue, out, "--merge") == 2  # shard 1's chunks are missing: named, nothing written
    assert "3 of 6 chunks are not tagged yet (chunks 0, 2, 4" in capsys.readouterr().err and not out.exists()
    assert tag(run, catalogue, out, "--shard", "1/2") == 0
    assert tag(run, catalogue, out, "--merge") == 0
    assert out.read_bytes() == whole.read_bytes()
    assert tag(run, catalogue, out, "--chunk-rows", "300") == 0  # already whole: another chunking is another job
    assert tag(run, catalogue, tmp_path / "other.csv", "--shard", "1/2") == 0
    assert tag(run, catalogue, tmp_path / "other.csv", "--shard", "2/2", "--chunk-rows", "300") == 2
    assert "holds the parts of another job (its chunk_rows differ)" in capsys.readouterr().err


def test_parquet_in_and_out_tags_as_the_csv_does(run, catalogue, whole, tmp_path):
    source = tmp_path / "catalogue.parquet"
    pd.read_csv(catalogue, dtype=str, keep_default_na=False).to_parquet(source)
    shutil.copytree(catalogue.parent / "image", tmp_path / "image")  # the photos beside it, as img_path says
    assert tag(run, source, tmp_path / "from_parquet.csv") == 0
    assert (tmp_path / "from_parquet.csv").read_bytes() == whole.read_bytes()
    assert tag(run, source, tmp_path / "tags.parquet") == 0
    back = pd.read_parquet(tmp_path / "tags.parquet")
    expected = pd.read_csv(whole, keep_default_na=False, dtype={"note": str})
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)


def test_bad_rows_are_tagged_from_what_is_there_or_refused_and_each_fault_is_named(run, catalogue, tmp_path):
    folder = tmp_path / "bad"
    (folder / "image").mkdir(parents=True)
    photo = sorted((catalogue.parent / "image/catalogue").iterdir())[0]
    (folder / "image/good.jpg").write_bytes(photo.read_bytes())
    (folder / "image/damaged.jpg").write_bytes(photo.read_bytes()[:20])
    long = "경복궁 근처의 한옥 카페입니다. " * 18_000  # 306,000 characters: over Python csv's default field limit
    assert len(long) > 300_000
    rows = [("A1", "./image/good.jpg", "서울 종로구의 한정식 식당"),
            ("A2", "./image/damaged.jpg", "부산의 해수욕장"),            # photo cannot be decoded: text alone
            ("A3", "./image/good.jpg", "   "),                            # blank text: photo alone
            ("A4", "", "\u200b"),                                         # nothing to tag: refused
            ("A1", "./image/good.jpg", "다시 나온 번호"),                  # duplicate id: refused
            ("A5", "../../../etc/hostname", "제주의 오름"),                # photo outside the folder: text alone
            ("A6", "./image/good.jpg", long),
            ("", "./image/good.jpg", "번호 없는 곳"),                      # no id: refused
            ("A7", "./image/missing.jpg", "강릉 커피거리")]                # photo not found: text alone
    with open(folder / "catalogue.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "img_path", "overview"])
        writer.writerows(rows)
    out = tmp_path / "tags.csv"
    from utils.predict import main

    assert main(["--run", str(run), "--csv", str(folder / "catalogue.csv"), "--out", str(out),
                 "--chunk-rows", "4"]) == 0
    tags = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id")
    assert list(tags.index) == ["A1", "A2", "A3", "A5", "A6", "A7"]
    assert "damaged.jpg: cannot be decoded" in tags.loc["A2", "note"]
    assert tags.loc["A3", "note"] == "no text: tagged from the photo alone"
    assert "outside the catalogue's folder" in tags.loc["A5", "note"]
    assert "missing.jpg: file not found" in tags.loc["A7", "note"] and tags.loc["A6", "note"] == ""
    refused = pd.read_csv(tmp_path / "tags.refused.csv", dtype=str, keep_default_na=False)
    assert refused.to_dict("records") == [
        {"row": "4", "id": "A4", "reason": "no text and no photo"},
        {"row": "5", "id": "A1", "reason": "duplicate id: first at row 1"},
        {"row": "8", "id": "", "reason": "no id"}]
    summary = json.loads((tmp_path / "tags.summary.json").read_text(encoding="utf-8"))
    assert summary["counts"] == {"no photo": 1, "no text": 1, "photo not usable": 3,
                                 "refused: duplicate id": 1, "refused: no id": 1,
                                 "refused: no text and no usable photo": 1}
    assert summary["examples"]["refused: duplicate id"].startswith("row 5 (id 'A1')")
    assert summary["examples"]["photo not usable"].startswith("row 2 (id 'A2'): ./image/damaged.jpg")


def test_file_level_faults_stop_before_any_model_loads(run, tmp_path, capsys):
    from utils.predict import main

    (tmp_path / "no_overview.csv").write_text("id,img_path\nA,\n", encoding="utf-8")
    (tmp_path / "twice.csv").write_text("id,img_path,overview,id\nA,,x,B\n", encoding="utf-8")
    (tmp_path / "utf16.csv").write_bytes("id,img_path,overview\nA,,한식\n".encode("utf-16"))
    (tmp_path / "fake.parquet").write_bytes(b"id,img_path,overview\n")
    cases = [("no_overview.csv", "overview"), ("twice.csv", "column 'id' appears more than once"),
             ("utf16.csv", "looks like UTF-16"), ("fake.parquet", "not a readable Parquet file"),
             ("absent.csv", "absent.csv: file not found")]
    for name, reason in cases:
        assert main(["--run", str(run), "--csv", str(tmp_path / name), "--out", str(tmp_path / "o.csv")]) == 2
        err = capsys.readouterr().err
        assert reason in err and "loading run" not in err and "Traceback" not in err, (name, err)
    assert main(["--run", str(run), "--csv", str(tmp_path / "utf16.csv"), "--out", "o.csv", "--shard", "3/2"]) == 2
    assert "--shard '3/2': give K/N" in capsys.readouterr().err


def test_chunks_read_windows_line_breaks_and_cp949_as_the_pipeline_does(tmp_path):
    (tmp_path / "c.csv").write_bytes('id,img_path,overview\r\nA,,"두 줄\r\n설명"\r\nB,,한식\r\n'.encode("cp949"))
    chunks = list(catalogue_chunks(tmp_path / "c.csv", chunk_rows=1))
    assert [list(c["overview"]) for c in chunks] == [["두 줄\n설명"], ["한식"]]
    with pytest.raises(CatalogueError, match="parts of another job"):
        from utils.catalogue import Parts as P

        parts = P(tmp_path / "x.csv")
        parts.start({"catalogue": "a"})
        parts.start({"catalogue": "b"})


def test_every_csv_reader_reads_a_field_longer_than_pythons_default_limit(tmp_path):
    import utils  # noqa: F401  (the package raises the limit for every reader)

    text = "가" * 300_000
    (tmp_path / "long.csv").write_text(f"id,overview\nA,{text}\n", encoding="utf-8")
    with open(tmp_path / "long.csv", encoding="utf-8", newline="") as fh:
        assert len(list(csv.reader(fh))[1][1]) == 300_000


class Constant:
    """A predictor answering the same path for every row: for the job's own rules, without a model."""

    device, dtype = "cpu", "float32"

    def predict(self, photos, texts, top_k, check=False, progress=False):
        return [{"cat1": "a", "cat2": "b", "cat3": "c", "hashtags": "#a #b #c", "keywords": [],
                 "path_probability": {"cat3": len(t) % 7 / 7}, "top_k": [("c", 0.5)]} for t in texts]


def test_what_a_catalogue_job_refuses_or_survives_without_a_model(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from utils.catalogue import tag_catalogue
    from utils.data import DataValidationError

    card = tmp_path / "predictor.json"
    card.write_text("{}", encoding="utf-8")

    def job(source, out, **options):
        return tag_catalogue(lambda: Constant(), source, out, card, log=lambda _: None, **options)

    source = tmp_path / "c.csv"
    source.write_text("id,img_path,overview\nA,,한식\nB,,양식\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="would overwrite the catalogue"):
        job(source, source)
    (tmp_path / "extra.csv").write_text("id,img_path,overview\nA,,한식,덤\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="lines have more fields than the header"):
        job(tmp_path / "extra.csv", tmp_path / "e.csv")  # pandas would drop the extra field silently

    # ids of any Parquet type read as written, nulls as none; a photo path no file system takes is a note
    table = pa.table({"id": pa.array([7, None, 2**53 + 1], pa.int64()), "img_path": ["./a\x00b.jpg", "", ""],
                      "overview": ["한식", "양식", "두 줄\r\n설명"]})
    pq.write_table(table, tmp_path / "c.parquet")
    job(tmp_path / "c.parquet", tmp_path / "p.csv")
    tags = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert list(tags["id"]) == ["7", "9007199254740993"] and "cannot be opened (ValueError" in tags["note"][0]
    assert pd.read_csv(tmp_path / "p.refused.csv", dtype=str)["reason"].tolist() == ["no id"]

    # a part cut short (a copy between machines) stops the merge, which keeps every part
    job(source, tmp_path / "s.csv", shard=(1, 2), chunk_rows=1)
    job(source, tmp_path / "s.csv", shard=(2, 2), chunk_rows=1)
    part = Parts(tmp_path / "s.csv").rows(1)
    part.write_bytes(part.read_bytes()[:10])
    with pytest.raises(CatalogueError, match="not the size their chunk wrote"):
        job(source, tmp_path / "s.csv", merge_only=True, chunk_rows=1)
    assert part.exists() and not (tmp_path / "s.csv").exists()

    # the encoders' precision is part of the job: a shard tagged with bf16 encoders is not merged with fp32 ones
    job(source, tmp_path / "b.csv", shard=(1, 2), chunk_rows=1, bf16_encoders=True)
    with pytest.raises(CatalogueError, match="its encoders differ"):
        job(source, tmp_path / "b.csv", shard=(2, 2), chunk_rows=1)
