"""Shared fixtures: one tiny generated dataset per session, and cheap copies of it to break."""
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_MININTERVAL", "30")
os.environ.setdefault("PIPELINE_QUIET_BARS", "1")
os.environ.setdefault("PIPELINE_NO_APP", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: each worker (and the notebook kernels it starts) on one
    os.environ["OMP_NUM_THREADS"] = "1"   # thread, so N workers share the cores instead of fighting for them
    import torch

    torch.set_num_threads(1)

from utils.generate import generate_dataset  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "long: a papermill chain of notebooks (minutes); scheduled first")


def pytest_collection_modifyitems(items):
    """The long chains first, each followed by one short test. With `-n N --maxschedchunk 1` (run_all.sh --test)
    xdist's load scheduler hands each worker two consecutive tests, then one more whenever it finishes one: pairs
    of one chain and one short test put one chain on each worker, and the next chain goes to whichever worker is
    free first. (Chains in a row would put two of them on the first worker: 8 min instead of 6.)"""
    long = [item for item in items if item.get_closest_marker("long")]
    short = [item for item in items if not item.get_closest_marker("long")]
    order = []
    for chain in long:
        order += [chain] + short[:1]
        short = short[1:]
    items[:] = order + short


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", seed=0, size="tiny", progress=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """The tests' own shared cache (built e5, encoder states): never the repository's outputs/."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory) -> Path:
    """A run folder holding a two-member predictor with untrained weights (tiny profile): seconds to make, for
    what needs a predictor that answers, not one that answers right."""
    import torch

    from utils.config import build
    from utils.data import load_taxonomy
    from utils.models import build_model
    from utils.predict import save_predictor
    from utils.training import _trainable_state

    folder = tmp_path_factory.mktemp("run")
    cfg, tax = build("tiny"), load_taxonomy()
    units = {}
    for kind in ("fusion_transformer", "text_frozen"):
        torch.save(_trainable_state(build_model(kind, cfg, tax.sizes, seed=1, stage="kfold")), folder / f"{kind}.pt")
        units[kind] = [folder / f"{kind}.pt"]
    save_predictor(cfg, tax, units, {"fusion_transformer": 0.7, "text_frozen": 0.3}, folder)
    return folder


@pytest.fixture
def small_copy(tiny_data, tmp_path):
    """A 30/10-row copy of the tiny dataset in the real layout, for tests that corrupt it."""
    def make(n_train: int = 30, n_test: int = 10) -> Path:
        out = tmp_path / "copy"
        (out / "image/train").mkdir(parents=True)
        (out / "image/test").mkdir(parents=True)
        train = pd.read_csv(tiny_data / "train.csv", dtype=str).head(n_train)
        test = pd.read_csv(tiny_data / "test.csv", dtype=str).head(n_test)
        for frame in (train, test):
            for rel in frame["img_path"]:
                shutil.copy(tiny_data / rel, out / rel)
        train.to_csv(out / "train.csv", index=False)
        test.to_csv(out / "test.csv", index=False)
        test[["id"]].assign(cat3="").to_csv(out / "sample_submission.csv", index=False)
        return out
    return make


class Countdown:
    """A time budget (utils.training.TimeBudget's interface) that runs out at its n-th look: a session limit,
    deterministically."""

    hours = 0.001

    def __init__(self, n):
        self.n = n

    def allows(self, seconds):
        self.n -= 1
        return self.n > 0


@pytest.fixture
def countdown():
    return Countdown
