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


def execute(name, tiny_data, out_dir, **params):
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(REPO / "notebooks" / name), str(out_dir / name), kernel_name="python3",
                        cwd=str(REPO), progress_bar=False,
                        parameters=dict(PROFILE="tiny", DATA_DIR=str(tiny_data), OUTPUT_DIR=str(out_dir), **params))
    return out_dir


def test_01_eda_executes(tiny_data, tmp_path):
    out = execute("01_eda.ipynb", tiny_data, tmp_path / "out")
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"eda_cat1_cat2_counts", "eda_cat3_counts", "eda_hierarchy", "eda_overview_length",
            "eda_image_sizes", "eda_sample_images"} <= figures
