"""Notebooks are committed clean, and execute for real under papermill on tiny settings."""
import json
from pathlib import Path

import papermill as pm
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_parameters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert not any(c.get("outputs") or c.get("execution_count") for c in code)


def execute(name, data_dir, out_dir, **params):
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(REPO / "notebooks" / name), str(out_dir / name), kernel_name="python3",
                        cwd=str(REPO), progress_bar=False,
                        parameters=dict(PROFILE="tiny", DATA_DIR=str(data_dir), OUTPUT_DIR=str(out_dir), **params))
    return out_dir


def test_01_eda_executes(tiny_data, tmp_path):
    out = execute("01_eda.ipynb", tiny_data, tmp_path / "out")
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"eda_cat1_cat2_counts", "eda_cat3_counts", "eda_hierarchy", "eda_overview_length",
            "eda_image_sizes", "eda_sample_images"} <= figures


def test_pipeline_02_to_07_executes_and_writes_its_artifacts(tiny_data, tmp_path):
    """The whole chain on tiny settings: label fixing, augmentation, models, ensemble, Grad-CAM, predict."""
    import subprocess
    import sys

    import pandas as pd

    out = tmp_path / "out"
    for name in ("02_label_fixing.ipynb", "03_augmentation.ipynb", "04_baseline.ipynb", "05_multimodal.ipynb",
                 "06_kfold_ensemble.ipynb", "07_gradcam.ipynb"):
        extra = {"VIT_MODEL": "vit_base_patch32_384", "N_EXPLAIN": 60, "N_CALIBRATE": 16} if name.startswith("07") else {}
        execute(name, tiny_data, out, **extra)
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
    assert any((out / "figures").glob("gradcam_image_vit_*.png"))
    image = str(tiny_data / "image/test/TEST_00000.jpg")
    cli = [sys.executable, "-m", "utils.predict", "--output-dir", str(out)]
    ok = subprocess.run(cli + ["--image", image, "--text", "비빔밥 한식 맛집"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.count("#") == 3, ok.stderr
    empty = subprocess.run(cli + ["--image", image, "--text", "  "], cwd=REPO, capture_output=True, text=True)
    assert empty.returncode == 2 and "empty text" in empty.stderr
    missing = subprocess.run(cli + ["--image", str(tmp_path / "nope.jpg"), "--text", "한식"], cwd=REPO,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.jpg" in missing.stderr
    no_model = subprocess.run([sys.executable, "-m", "utils.predict", "--output-dir", str(tmp_path / "empty"),
                               "--image", image, "--text", "한식"], cwd=REPO, capture_output=True, text=True)
    assert no_model.returncode == 2 and "no trained model" in no_model.stderr


def test_pipeline_runs_on_data_it_was_not_tuned_on(tmp_path):
    """A folder in the real layout written without the project's generator (CP949 CSV, PNG named .jpg...)."""
    from foreign_data import write

    data = write(tmp_path / "foreign", n_train=120, n_test=30)
    out = tmp_path / "out"
    for name in ("04_baseline.ipynb", "05_multimodal.ipynb"):
        execute(name, data, out)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["models"]
    assert {"text_tfidf", "fusion_transformer", "late_fusion"} <= set(metrics)
