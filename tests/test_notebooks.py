"""Notebooks are committed clean, and execute for real under papermill on tiny settings."""
import json
from pathlib import Path

import papermill as pm
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PIPELINE = [p for p in NOTEBOOKS if not p.name.startswith("00")]  # 00 is the Colab/Kaggle launcher of the rest


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_parameters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert not any(c.get("outputs") or c.get("execution_count") for c in code)


def execute(name, data_dir, out_dir, seed=0, **settings) -> Path:
    """Run one notebook as run_all.sh does; return the run's folder (everything it wrote is there)."""
    from utils.config import build, resolve, run_dir

    out_dir.mkdir(parents=True, exist_ok=True)
    folder = run_dir(resolve(build("tiny", {**settings, "seed": seed, "data_dir": str(data_dir),
                                            "output_dir": str(out_dir)})))
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(REPO / "notebooks" / name), str(folder / "notebooks" / name), kernel_name="python3",
                        cwd=str(REPO), progress_bar=False,
                        parameters=dict(SET={**settings, "profile": "tiny", "data_dir": str(data_dir),
                                             "output_dir": str(out_dir), "seed": seed}))
    return folder


@pytest.mark.long
def test_pipeline_02_to_07_executes_and_writes_its_artifacts(tiny_data, tmp_path, capsys):
    """The whole chain on tiny settings: label fixing, augmentation, models, ensemble, Grad-CAM, predict."""
    import subprocess
    import sys

    import pandas as pd

    root = tmp_path / "out"
    for name in ("02_label_fixing.ipynb", "03_augmentation.ipynb", "04_baseline.ipynb", "05_multimodal.ipynb",
                 "06_kfold_ensemble.ipynb", "07_gradcam.ipynb"):
        extra = {"gradcam_explain": 96, "gradcam_calibrate": 16} if name.startswith("07") else {}  # 16 > what is left
        # models of one notebook in different training modes, as in the full profile (05: fusion end to end,
        # late fusion on cached vectors)
        out = execute(name, tiny_data, root, **{"fusion_transformer.training_mode": "end_to_end",
                                                "fusion_transformer.steps_per_epoch": 8, **extra})
    assert sorted(p.name for p in root.iterdir()) == ["cache", "tiny-tiny-seed0"]
    assert (out / "notebooks" / "07_gradcam.ipynb").exists() and (out / "validation_split.csv").exists()
    suspects = pd.read_csv(out / "label_suspects.csv")
    assert list(suspects.columns) == ["id", "given_cat3", "suggested_cat3", "score"]
    assert suspects["score"].is_monotonic_decreasing
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert {"models", "augmentation", "ensemble", "data_quality", "explanations"} <= set(metrics)
    submission = pd.read_csv(out / "submission.csv", dtype=str)
    test = pd.read_csv(tiny_data / "test.csv", dtype=str)
    assert list(submission.columns) == ["id", "cat3"] and list(submission["id"]) == list(test["id"])
    from utils.data import load_taxonomy
    assert submission["cat3"].isin(load_taxonomy().cat3).all()
    points = pd.read_csv(out / "gradcam_points.csv")
    assert list(points.columns) == ["id", "x", "y"] and len(points) > 50
    explained = metrics["explanations"]["gradcam"]
    assert {"image_frozen", "image_vit", "fusion_transformer"} <= set(explained["peak_inside_object"])
    assert set(explained["explainers"]) == {"image_frozen", "image_vit", "fusion_transformer"}
    assert set(explained["peak_inside_object_with_defaults"]) == set(explained["explainers"])  # what no-box data gets
    split = pd.read_csv(out / "validation_split.csv")
    photos = pd.read_csv(tiny_data / "train.csv", dtype=str, keep_default_na=False).set_index("id")["img_path"]
    n_photos = int((photos.loc[split.loc[split["split"] == "val", "id"]] != "").sum())
    assert explained["config"]["n_calibrate"] == n_photos - 96 < 16  # the images it had, not the setting
    assert any((out / "figures").glob("gradcam_image_vit_*.png"))
    # The predictor is the submission: every member of some weight with its weight, and the same labels on the
    # test rows.
    card = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    weights = {kind: w for kind, w in metrics["ensemble"]["kfold"]["weights"].items() if w > 0}
    assert {m["kind"]: m["weight"] for m in card["members"]} == pytest.approx(weights)
    assert all(len(m["units"]) == 3 for m in card["members"])  # the tiny profile's 3 folds, one seed
    checked = metrics["ensemble"]["predictor"]
    assert checked["same_cat3_as_submission"] == 1.0 and checked["test_rows"] == checked["of_test_rows"]  # every row
    image = str(tiny_data / "image/test/TEST_00000.jpg")
    cli = [sys.executable, "-m", "utils.predict", "--output-dir", str(root)]  # the command line once, for real
    ok = subprocess.run(cli + ["--image", image, "--text", "비빔밥 한식 맛집. 성수동 꽃게찜"], cwd=REPO, capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "path p: cat1" in ok.stdout, ok.stderr
    tags = ok.stdout.split(":", 1)[1].split("(path p")[0].split()
    assert len(tags) >= 4 and "#성수동" in tags[3:] and "#꽃게찜" in tags[3:]  # three categories, then keywords
    assert f"loading run {out}" in ok.stderr
    from utils.predict import main  # the other answers in this process: each is main()'s, as the command's
    args = ["--output-dir", str(root)]
    with pytest.warns(UserWarning, match="the text carries most of the signal"):
        assert main(args + ["--image", image]) == 0  # a photo alone: answered, and warned
    capsys.readouterr()
    assert main(args + ["--text", "  "]) == 2 and "no text and no photo" in capsys.readouterr().err
    assert main(args + ["--image", str(tmp_path / "nope.jpg"), "--text", "한식"]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert main(["--output-dir", str(tmp_path / "empty"), "--image", image, "--text", "한식"]) == 2
    assert "no run with a trained predictor" in capsys.readouterr().err

    # A second run with another seed into the same outputs folder: its own folder, folds and predictor (06 with
    # named members needs no 04 results).
    members = {"kfold_models": "text_tfidf,fusion_transformer"}
    other = execute("06_kfold_ensemble.ipynb", tiny_data, root, seed=1, **members)
    assert other.name == "tiny-tiny-seed1" and other != out
    assert not pd.read_csv(out / "folds.csv").equals(pd.read_csv(other / "folds.csv"))
    cards = {run: json.loads((run / "predictor.json").read_text(encoding="utf-8")) for run in (out, other)}
    for run, card in cards.items():
        units = [u for m in card["members"] for u in m["units"]]
        assert units and all(u.startswith("checkpoints/") and (run / u).exists() for u in units)  # within the run
        assert card["cfg"]["seed"] == (0 if run == out else 1)

    # Rerunning 06 with fewer folds never picks up the old folds.
    before = {p: p.stat().st_mtime_ns for p in other.rglob("*") if p.is_file() and "/notebooks/" not in str(p)}
    execute("06_kfold_ensemble.ipynb", tiny_data, root, **members, n_folds=2)
    card = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    assert all(sorted(Path(u).parent.name for u in m["units"]) == ["fold0", "fold1"] for m in card["members"])
    assert pd.read_csv(out / "folds.csv")["fold"].max() == 1
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["n_folds"] == 2
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # the seed-1 run was not touched


@pytest.mark.long
@pytest.mark.parametrize("no_photo", [0.33, 1.0], ids=["a third without photos", "no photos"])
def test_own_taxonomy_and_places_without_photos_through_every_notebook(tmp_path, no_photo):
    """Data the pipeline was not tuned on: written without the project's generator (CP949 CSV, PNG named .jpg...),
    with its own label tree (products, not places) and rows without photos, in part or all. Every notebook runs
    without code changes; the submission, the predictor and its CSV mode speak that tree."""
    import pandas as pd
    from foreign_data import write

    from utils.data import load_taxonomy
    from utils.predict import Predictor, main

    data = write(tmp_path / "products", n_train=120, n_test=30, tree="products", no_photo=no_photo)
    for path in PIPELINE:
        out = execute(path.name, data, tmp_path / "out")
    assert out.name == "tiny-products-seed0" and (out / "config.json").exists()
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"eda_cat1_cat2_counts", "eda_cat3_counts", "eda_hierarchy", "eda_overview_length"} <= figures
    assert ({"eda_image_sizes", "eda_sample_images"} <= figures) == (no_photo < 1)
    tree = load_taxonomy(data / "taxonomy.csv")
    assert set(pd.read_csv(out / "submission.csv")["cat3"]) <= set(tree.cat3)
    card = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    assert sorted(map(tuple, card["taxonomy"])) == sorted(map(tuple, tree.records()))
    models = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["models"]
    notebooks = {p.name: p.read_text(encoding="utf-8") for p in (out / "notebooks").glob("*.ipynb")}
    if no_photo == 1.0:
        assert not any("image" in name or "fusion" in name for name in models)  # text models only
        assert "no photos in this dataset" in notebooks["07_gradcam.ipynb"]
        assert "train: 0 of 120 rows have a photo" in notebooks["01_eda.ipynb"]
    else:
        assert {"image_frozen", "fusion_transformer"} <= set(models)
        assert "have no photo and are left out" in notebooks["04_baseline.ipynb"]
        assert (out / "gradcam_points.csv").exists()
    result = Predictor(out).predict([None], ["반팔 면 라운드넥 가까운 곳입니다."])[0]
    assert result["hashtags"].startswith("#패션 #의류 #티셔츠")
    assert main(["--run", str(out), "--csv", str(data / "test.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert len(predicted) == 30 and predicted["hashtags"].str.startswith("#").all()
    assert (predicted["cat3"].to_numpy() == pd.read_csv(out / "submission.csv")["cat3"].to_numpy()).all()
    # The run folder travels (a Kaggle dataset, Drive): copied elsewhere, the original and its cache gone, it
    # predicts its own submission.
    import shutil

    moved = shutil.copytree(out, tmp_path / "elsewhere" / out.name)
    submitted = pd.read_csv(out / "submission.csv")["cat3"].to_numpy()
    shutil.rmtree(out)
    shutil.rmtree(tmp_path / "out" / "cache")
    assert main(["--run", str(moved), "--csv", str(data / "test.csv"), "--out", str(tmp_path / "q.csv")]) == 0
    assert (pd.read_csv(tmp_path / "q.csv")["cat3"].to_numpy() == submitted).all()


@pytest.mark.long
def test_the_colab_kaggle_launcher_runs_the_pipeline_and_shows_its_progress(tmp_path):
    """00 as a Colab or Kaggle user runs it, on the CPU with the tiny profile: it finds the repository, runs
    run_all.sh with the settings given, streams its progress, and shows where the run is."""
    import sys

    executed = tmp_path / "00.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "00_colab_kaggle.ipynb"), str(executed), kernel_name="python3",
                        cwd=str(REPO / "notebooks"), progress_bar=False,
                        parameters=dict(PROFILE="tiny", PLATFORM="", OUTPUT_DIR=str(tmp_path / "out"), STEPS=["01"]))
    text = executed.read_text(encoding="utf-8")
    assert "==> 01_eda.ipynb" in text and "run_all.sh exited with 0" in text
    assert "run folder: " + str(tmp_path / "out" / "tiny-generated-tiny-seed0") in text
    assert (tmp_path / "out" / "tiny-generated-tiny-seed0" / "notebooks" / "01_eda.ipynb").exists()
