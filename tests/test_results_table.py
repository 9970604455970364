"""benchmarks/results_table.py: the floor a short run's neural models must clear, and the ensemble's."""
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "results_table.py"


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, image_f1: float, ensemble_oof: float) -> Path:
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir(parents=True)
    run.mkdir()
    labels = ["한식"] * 6 + ["중식"] * 3 + ["일식"] * 1
    ids = [f"TRAIN_{i:05d}" for i in range(10)]
    pd.DataFrame({"id": ids, "img_path": "", "overview": "맛있는 식당입니다", "cat1": "음식", "cat2": "음식점",
                  "cat3": labels}).to_csv(data / "train.csv", index=False)  # a data folder the run could have read
    pd.DataFrame({"id": ["TEST_00000"], "img_path": "", "overview": "식당"}).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": ["TEST_00000"], "cat3": ""}).to_csv(data / "sample_submission.csv", index=False)
    split = ["train", "val"] * 5
    pd.DataFrame({"id": ids, "split": split}).to_csv(run / "validation_split.csv", index=False)
    (run / "config.json").write_text(json.dumps({"data_dir": str(data)}))
    models = {"text_tfidf": 0.2, "image_frozen": image_f1}
    metrics = {"models": {k: {"hierarchical": {"weighted_f1_cat3": v}} for k, v in models.items()},
               "ensemble": {"kfold": {"models": [{"model": "image_frozen", "OOF weighted F1 cat3": 0.7},
                                                 {"model": "ensemble", "OOF weighted F1 cat3": ensemble_oof}]}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_a_neural_model_at_the_majority_class_and_an_ensemble_below_its_member_are_missed(table, tmp_path):
    run = _run(tmp_path, image_f1=0.45, ensemble_oof=0.69)
    rows = table.headline(run)
    # validation rows: 한식 x3, 중식 x1, 일식 x1; the training rows' most common class is 한식
    assert rows["validation: majority class"] == pytest.approx(0.6 * 0.75)
    verdicts = {line.split(": ", 1)[1].split(" ")[0]: ok for ok, line in table.targets("run", rows)}
    assert verdicts == {"image_frozen": False, "ensemble": False}  # TF-IDF is not held to the floor

    rows = table.headline(_run(tmp_path / "again", image_f1=0.46, ensemble_oof=0.7))
    assert all(ok for ok, _ in table.targets("run", rows))

    other = _run(tmp_path / "other", image_f1=0.46, ensemble_oof=0.7)  # a split that names rows train.csv lacks
    (other / "validation_split.csv").write_text("id,split\nTRAIN_99999,train\nTRAIN_00001,val\n")
    rows = table.headline(other)
    assert "validation: majority class" not in rows and len(table.targets("other", rows)) == 1  # the ensemble's


def test_several_runs_are_written_with_their_mean_and_spread(table, tmp_path):
    runs = [_run(tmp_path / f"seed{i}", image_f1=0.46 + 0.02 * i, ensemble_oof=0.7) for i in range(3)]
    out = tmp_path / "seeds.csv"
    table.main([str(r) for r in runs] + ["--csv", str(out)])
    written = pd.read_csv(out).set_index("measure")
    image = [k for k in written.index if "image_frozen" in k][0]
    assert written.loc[image, "mean"] == pytest.approx(0.48) and written.loc[image, "sd"] == pytest.approx(0.02)
    assert list(written.columns) == ["seed0/run", "seed1/run", "seed2/run", "mean", "sd"]  # same-named runs apart
    assert table.run_names(["/w/foreign-mixed/outputs/peer", "/w/second/outputs/peer", "/w/outputs/demo"]) == [
        "foreign-mixed/outputs/peer", "second/outputs/peer", "w/outputs/demo"]  # peer.py's layout
