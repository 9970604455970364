"""The registry of model kinds: a kind registered in one place (here, in this test) trains, is chosen by
`kfold_models=auto`, is saved in predictor.json and predicts through utils.predict, with no other file changed."""
import json

import numpy as np
import pytest
from torch import nn

from utils import kinds
from utils.config import ConfigError, build
from utils.data import load_dataset
from utils.ensemble import blend, choose_members, kfold_predictions
from utils.experiments import model_data, runnable, train_and_score
from utils.metrics import results_table
from utils.models import pool_text
from utils.predict import Predictor, save_predictor
from utils.splits import kfold, stratified_split


class PooledMLP(nn.Module):
    """A kind no module of utils/ knows: two layers over the pooled text vector."""

    def __init__(self, towers, sizes, cfg):
        super().__init__()
        self.tower = towers["text"]
        width = self.tower.hidden_size
        self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 32), nn.GELU())
        self.out = nn.ModuleDict({level: nn.Linear(32, n) for level, n in sizes.items()})

    def forward(self, batch):
        pooled = batch["text_pooled"].float() if "text_pooled" in batch else pool_text(*self.tower(batch))
        hidden = self.body(pooled)
        return {level: head(hidden) for level, head in self.out.items()}


@pytest.fixture
def toy():
    kinds.register(kinds.Kind("toy_mlp", "toy", ("text_pooled",), build=PooledMLP))
    yield "toy_mlp"
    kinds.unregister("toy_mlp")


def test_the_registry_lists_every_kind_once_and_refuses_a_half_registration():
    assert set(kinds.names()) == {k for family in kinds.families().values() for k in family}
    with pytest.raises(ValueError, match="build"):
        kinds.register(kinds.Kind("broken", "text", ("text_pooled",)))
    with pytest.raises(ValueError, match="unknown model kind 'nope'"):
        kinds.get("nope")
    with pytest.raises(ConfigError, match="toy_mlp.epochs"):
        build("tiny", {"toy_mlp.epochs": 2})  # a scope of no registered kind


def test_a_registered_toy_kind_trains_joins_the_ensemble_and_predicts(toy, tiny_data, tmp_path):
    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path), "kfold_models": "auto",
                         "toy_mlp.epochs": 2, "n_folds": 2, "kfold_seeds": "0"})
    ds = load_dataset(tiny_data, progress=False, check_images=False)
    y3 = ds.labels("cat3")
    split = stratified_split(ds.train["id"].to_numpy(), np.asarray(ds.given_cat3), 0)["split"].to_numpy()
    train_idx, val_idx = np.flatnonzero(split != "val"), np.flatnonzero(split == "val")

    result, _, _ = train_and_score(toy, model_data(ds, cfg, [toy]), train_idx, val_idx, ds, cfg,
                                   tmp_path / "checkpoints", toy, record_to=tmp_path)
    assert len(result["history"]) == 2 and (tmp_path / "checkpoints" / toy / "best.pt").exists()

    members, _ = choose_members(results_table(tmp_path), cfg.kfold_margin)
    assert toy in runnable(members, ds)  # alone in its family, so `auto` takes it

    folds = kfold(y3, cfg.n_folds, 0)
    member = kfold_predictions(toy, ds, cfg, folds, cfg.training_seeds, tmp_path / "checkpoints", tmp_path)
    assert member["oof"]["cat3"].shape == (len(ds.train), 128)

    save_predictor(cfg, ds.taxonomy, {toy: member["checkpoints"]}, {toy: 1.0}, tmp_path)
    card = json.loads((tmp_path / "predictor.json").read_text())
    assert [m["kind"] for m in card["members"]] == [toy]
    again = Predictor(tmp_path, "cpu").probabilities(ds.test["image_file"].tolist(), ds.test["overview"].tolist())
    expected = blend([member["test"]], np.array([1.0]))
    np.testing.assert_allclose(again["cat3"], expected["cat3"], atol=1e-4)
