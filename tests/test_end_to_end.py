"""The end-to-end engine: raw rows, whole-encoder training, precision from the hardware."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from utils.config import build
from utils.data import load_dataset
from utils.experiments import model_data
from utils.features import feature_data
from utils.kinds import get as kind_spec
from utils.models import build_model
from utils.rows import RawRows
from utils.runtime import choose_precision
from utils.training import fit, predict

SIZES = {"cat1": 6, "cat2": 18, "cat3": 128}


@pytest.fixture(scope="module")
def ds(tiny_data):
    return load_dataset(tiny_data, progress=False, check_images=False)


def _lowest(model, kind):
    """The lowest encoder layer's first weight: the text encoder's first transformer layer, the CNN's stem."""
    tower = model.text if kind == "fusion_transformer" else model.tower
    return next(tower.encoder.encoder.layer[0].parameters()) if hasattr(tower, "encoder") else tower.model.conv_stem.weight


@pytest.mark.parametrize("kind", ["text_finetuned", "image_finetuned", "fusion_transformer"])
def test_one_end_to_end_step_moves_the_lowest_encoder_layer_and_cached_mode_does_not(ds, tmp_path, kind):
    for mode, moves in (("end_to_end", True), ("cached", False)):
        cfg = build("tiny", {f"{kind}.training_mode": mode, "cache_dir": str(tmp_path / "cache"), "batch_size": 8})
        model = build_model(kind, cfg, SIZES)
        before = _lowest(model, kind).detach().clone()
        data = model_data(ds, cfg, [kind])
        tc = replace(cfg.schedule(kind), epochs=1, lr=1e-2, encoder_lr=1e-2, warmup_ratio=0.0)
        result = fit(model, data, np.arange(8), np.arange(8, 12), tc, tmp_path / f"{kind}-{mode}", verbose=False)
        changed = not torch.equal(before, _lowest(model, kind).detach())
        assert changed == moves, f"{kind} in {mode} mode: lowest encoder layer changed={changed}"
        again = predict(result.model, data, np.arange(8, 12), device="cpu")  # the validation pass fit hands back
        assert all(np.allclose(result.val_probs[level], again[level], atol=1e-6) for level in SIZES), kind


@pytest.mark.parametrize("kind", ["text_frozen", "image_frozen", "late_fusion", "fusion_transformer"])
def test_a_frozen_model_predicts_the_same_from_raw_rows_and_from_cached_states(ds, tmp_path, kind):
    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache")})
    model = build_model(kind, cfg, SIZES).eval()
    rows = np.arange(len(ds.train) - 5, len(ds.train) + 5)  # train and test rows
    cached = predict(model, feature_data(ds, cfg, kind_spec(kind).inputs), rows, device="cpu")
    raw = predict(model, RawRows(ds, build("tiny", {f"{kind}.training_mode": "end_to_end"}), ("text", "image")), rows,
                  device="cpu")
    for level in SIZES:
        assert np.allclose(cached[level], raw[level], atol=2e-3), level  # cached states are stored in fp16


def test_augmentation_reaches_training_rows_only(ds):
    cfg = build("tiny", {"training_mode": "end_to_end", "text_augment": "span,swap", "image_augment": True})
    rows = RawRows(ds, cfg)
    train_idx, val_idx = np.arange(0, 20), np.arange(20, 30)
    view = rows.for_training(train_idx)
    def draws(data, i, n=6):  # one draw per epoch: an item's augmentation is seeded by the epoch and the row
        return [(data.at_epoch(e)[i]["text"], data.at_epoch(e)[i]["pixels"]) for e in range(n)]
    for i in val_idx:  # a validation row: always the original text and the eval image, whatever the draw
        for text, pixels in draws(view, i, 3):
            assert text == rows.texts[i] and torch.equal(pixels, rows[i]["pixels"])
    changed_text = changed_image = 0
    for i in train_idx:
        got = draws(view, i)
        changed_text += any(t != rows.texts[i] for t, _ in got)
        changed_image += any(not torch.equal(p, rows[i]["pixels"]) for _, p in got)
    assert changed_text >= 15 and changed_image >= 15
    assert not rows.augment_rows  # the view did not change the shared rows


def test_loader_workers_give_the_batches_of_the_main_process(ds):
    """A GPU turns DataLoader workers on by itself: with two workers the loader yields exactly the batches of
    none, augmentation included (it used to stop at the first batch: the worker's seeding read a wrong attribute),
    and pixels travel as uint8, normalised on the device to the cached path's values."""
    from utils.inputs import image_tensor, to_device

    settings = {"training_mode": "end_to_end", "text_augment": "span,swap", "image_augment": True}
    groups = [np.arange(0, 6), np.arange(6, 12), np.arange(12, 16)]
    got = {}
    for workers in (0, 2):
        rows = RawRows(ds, build("tiny", {**settings, "num_workers": workers})).for_training(np.arange(16), seed=3)
        got[workers] = [to_device(b, "cpu") for epoch in (0, 1) for b in rows.loader(groups, "cpu", epoch)]
    assert len(got[2]) == 6
    for a, b in zip(got[0], got[2]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    assert not torch.equal(got[0][0]["pixels"], got[0][3]["pixels"])  # epochs draw differently
    rows = RawRows(ds, build("tiny", {"training_mode": "end_to_end", "num_workers": 2}))
    batch = next(iter(rows.loader([np.arange(20, 24)], "cpu")))
    assert batch["pixels"].dtype == torch.uint8
    cached = torch.stack([image_tensor(rows.photos[i], rows.cfg.image_size, rows.image.mean, rows.image.std)
                          for i in range(20, 24)])
    assert torch.equal(to_device(batch, "cpu")["pixels"], cached)


@pytest.mark.parametrize("device,capability,want", [("cpu", None, "fp32"), ("cuda", (7, 5), "fp16"),
                                                    ("cuda", (6, 0), "fp16"), ("cuda", (8, 0), "bf16"),
                                                    ("cuda", (9, 0), "bf16")])
def test_precision_follows_the_hardware(device, capability, want):
    assert choose_precision(device, "auto", capability) == want  # T4 is 7.5, P100 6.0, A100 8.0, H100 9.0
    assert choose_precision(device, "fp32", capability) == "fp32"  # an explicit choice wins


@pytest.mark.parametrize("train_words", [False, True])
def test_the_token_embedding_table_trains_end_to_end_only_when_asked(train_words):
    cfg = build("tiny", {"training_mode": "end_to_end", "train_word_embeddings": train_words})
    model = build_model("fusion_transformer", cfg, SIZES)
    embeddings = model.text.encoder.embeddings
    assert embeddings.word_embeddings.weight.requires_grad == train_words
    assert embeddings.position_embeddings.weight.requires_grad and embeddings.LayerNorm.weight.requires_grad


def test_models_of_different_training_modes_never_share_one_data_source(ds):
    cfg = build("tiny")  # the fine-tunes train end to end, the frozen models on cached states
    with pytest.raises(ValueError, match="different modes"):
        model_data(ds, cfg, ["text_frozen", "text_finetuned"])
    assert isinstance(model_data(ds, cfg, ["text_finetuned"]), RawRows)


def test_layer_wise_learning_rates_decay_from_the_top():
    from utils.models import encoder_layer_lrs

    model = build_model("text_finetuned", build("tiny", {"training_mode": "end_to_end"}), SIZES)
    lrs = encoder_layer_lrs(model, 1e-4, 0.5)
    layers = model.tower.encoder.encoder.layer
    top, below = lrs[id(next(layers[-1].parameters()))], lrs[id(next(layers[-2].parameters()))]
    assert top == pytest.approx(1e-4) and below == pytest.approx(5e-5)
    assert lrs[id(model.tower.encoder.embeddings.word_embeddings.weight)] == pytest.approx(1e-4 * 0.5 ** len(layers))


def test_layer_wise_heads_read_the_hidden_layers_they_claim(ds):
    """Each level's block sees exactly transformers' hidden_states[depth] of its level (the 9th place's -5/-3/-1,
    here -3/-2/-1 on the two-layer tiny encoder), from raw tokens and from cached states below the top."""
    cfg = build("tiny", {"text_finetuned.training_mode": "end_to_end", "text_head": "layerwise",
                         "layerwise_depths": "-3,-2,-1"})
    model = build_model("text_finetuned", cfg, SIZES)
    seen = _read_by_the_heads(model, next(iter(RawRows(ds, cfg, ("text",)).loader([np.arange(4)], "cpu"))), cfg)
    assert not torch.allclose(seen["cat1"], seen["cat3"])


def _read_by_the_heads(model, batch, cfg) -> dict:
    """What each level's block reads of `batch` (in eval mode), checked against transformers' hidden_states[depth]
    of the configured depth."""
    model.eval()
    seen = {}
    hooks = [block.register_forward_hook(lambda mod, args, kwargs, out, level=level: seen.__setitem__(level, args[0]),
                                         with_kwargs=True) for level, block in model.blocks.items()]
    with torch.no_grad():
        model(batch)
        hidden = model.tower.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     output_hidden_states=True).hidden_states
    for hook in hooks:
        hook.remove()
    for level, depth in cfg.head_depths.items():
        assert torch.allclose(seen[level], hidden[depth], atol=1e-5), f"{level} does not read hidden_states[{depth}]"
    return seen


def test_layer_wise_heads_below_the_top_neither_run_nor_train_the_layers_above(ds):
    """Depths -3/-2/-2 read nothing of the last layer: it neither runs nor trains, so that every weight that
    trains gets a gradient (data-parallel training refuses one that does not: "Expected to have finished
    reduction"), and each level still reads transformers' hidden_states[depth]."""
    cfg = build("tiny", {"text_finetuned.training_mode": "end_to_end", "text_head": "layerwise",
                         "layerwise_depths": "-3,-2,-2"})
    model = build_model("text_finetuned", cfg, SIZES).train()
    for block in model.blocks.values():
        block.dropout.p = block.dropout1.p = block.dropout2.p = 0.0
    batch = next(iter(RawRows(ds, cfg, ("text",)).loader([np.arange(4)], "cpu")))
    out = model(batch)
    sum(o.sum() for o in out.values()).backward()
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for _, p in trained), [n for n, p in trained if p.grad is None]
    assert not any(p.requires_grad for p in model.tower.encoder.encoder.layer[-1].parameters())
    _read_by_the_heads(model, batch, cfg)


def test_layer_wise_heads_refuse_depths_below_the_trained_layers(ds, tmp_path):
    cfg = build("tiny", {"text_head": "layerwise", "layerwise_depths": "-3,-2,-1", "text_top_layers": 1,
                         "text_finetuned.training_mode": "cached", "cache_dir": str(tmp_path / "cache")})
    model = build_model("text_finetuned", cfg, SIZES)
    data = model_data(ds, cfg, ["text_finetuned"])
    with pytest.raises(ValueError, match=r"depths \[-3\] are outside the 1 text layers"):
        model(next(iter(batches_of(data))))


def batches_of(data, n=4):
    from utils.training import batches

    return batches(data, np.arange(n), n)


def test_loss_weights_reach_training_and_bad_ones_fail():
    from utils.config import ConfigError

    assert build("demo", {"loss_weights": "0.05,0.15,0.8"}).schedule("text_finetuned").loss_weights == (
        0.05, 0.15, 0.8)  # the 9th place's
    assert build("full", {"data_dir": "/x"}).schedule("text_finetuned").loss_weights == (0.05, 0.15, 0.8)
    for bad in ("0.1,0.9", "a,b,c", "-1,1,1"):
        with pytest.raises(ConfigError, match="loss_weights"):
            build("demo", {"loss_weights": bad})


def test_kfold_stopped_by_the_time_budget_and_rerun_ends_with_the_same_oof(ds, tmp_path, countdown):
    from utils.ensemble import kfold_predictions
    from utils.splits import kfold
    from utils.training import TimeBudgetExceeded

    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache"), "batch_size": 8, "n_folds": 2, "kfold.steps_per_epoch": 4})
    folds = kfold(ds.labels("cat3"), 2, 0)
    whole = kfold_predictions("text_frozen", ds, cfg, folds, [0, 1], tmp_path / "a", tmp_path / "a")
    with pytest.raises(TimeBudgetExceeded, match=r"text_frozen: 4 of 4 units remain \(seed 0 fold 0, seed 0 fold 1"):
        kfold_predictions("text_frozen", ds, cfg, folds, [0, 1], tmp_path / "b", tmp_path / "b", budget=countdown(4))
    with pytest.raises(TimeBudgetExceeded, match=r"2 of 4 units remain \(seed 1 fold 0, seed 1 fold 1\)"):
        kfold_predictions("text_frozen", ds, cfg, folds, [0, 1], tmp_path / "b", tmp_path / "b", budget=countdown(20))
    again = kfold_predictions("text_frozen", ds, cfg, folds, [0, 1], tmp_path / "b", tmp_path / "b")
    for level in SIZES:
        assert np.allclose(whole["oof"][level], again["oof"][level], atol=1e-6)
        assert np.allclose(whole["test"][level], again["test"][level], atol=1e-6)


def test_distillation_students_learn_the_soft_test_labels_and_retrain_when_they_change(ds, tmp_path):
    """Soft targets that put every test row in one class pull the students' test answers there (the teachers'
    do not move), every unit also trains on the test rows, and other soft labels mean other students."""
    from utils.ensemble import kfold_predictions
    from utils.splits import kfold

    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache"), "batch_size": 8, "n_folds": 2, "kfold.epochs": 3})
    folds = kfold(ds.labels("cat3"), 2, 0)
    teacher = kfold_predictions("text_frozen", ds, cfg, folds, [0], tmp_path, tmp_path)
    c3 = int(np.argmin(teacher["test"]["cat3"].mean(0)))  # the class the teachers believe least in
    c2, c1 = ds.taxonomy.parent_of("cat3")[c3], ds.taxonomy.parent_of("cat2")[ds.taxonomy.parent_of("cat3")[c3]]
    n_test = len(ds.test)
    soft = {level: np.eye(SIZES[level])[np.full(n_test, c)] for level, c in (("cat1", c1), ("cat2", c2), ("cat3", c3))}
    student = kfold_predictions("text_frozen", ds, cfg, folds, [0], tmp_path, tmp_path, tag="distill", soft_test=soft)
    assert student["test"]["cat3"][:, c3].mean() > 5 * teacher["test"]["cat3"][:, c3].mean()
    result = json.loads((tmp_path / "distill/text_frozen/seed0/fold0/result.json").read_text())
    assert result["config"]["identity"]["soft_targets"]
    stamp = (tmp_path / "distill/text_frozen/seed0/fold0/best.pt").stat().st_mtime_ns
    kfold_predictions("text_frozen", ds, cfg, folds, [0], tmp_path, tmp_path, tag="distill", soft_test=soft)
    assert (tmp_path / "distill/text_frozen/seed0/fold0/best.pt").stat().st_mtime_ns == stamp  # same: reused
    other = {level: np.full_like(p, 1.0 / p.shape[1]) for level, p in soft.items()}
    kfold_predictions("text_frozen", ds, cfg, folds, [0], tmp_path, tmp_path, tag="distill", soft_test=other)
    assert (tmp_path / "distill/text_frozen/seed0/fold0/best.pt").stat().st_mtime_ns != stamp  # changed: retrained


def test_kfold_units_train_on_copies_of_their_own_training_rows_only(ds, tmp_path, monkeypatch):
    """Adopted augmented copies: each unit trains on its fold's rows and the copies of exactly those rows (never a
    copy of a row it is scored on); the copies are encoded once and kept in the cache, a rerun reuses the units,
    and other copies mean other units."""
    from utils import ensemble
    from utils.splits import kfold

    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache"), "batch_size": 8, "n_folds": 2, "kfold.epochs": 2})
    folds = kfold(ds.labels("cat3"), 2, 0)
    seen, fit = [], ensemble.fit_model
    monkeypatch.setattr(ensemble, "fit_model", lambda kind, data, train_idx, *a, **k: (
        seen.append((data, np.asarray(train_idx))), fit(kind, data, train_idx, *a, **k))[1])
    variant = "image augmentation copies"
    ensemble.kfold_predictions("late_fusion", ds, cfg, folds, [0], tmp_path, tmp_path, copies=variant)
    assert len(seen) == 2 and len(list((tmp_path / "cache/copies").glob("late_fusion-*.pt"))) == 1
    n = len(ds.train) + len(ds.test)
    for k, (data, train_idx) in enumerate(seen):
        rows, sources = data.copies
        assert len(rows) > 0 and rows.min() == n
        own = train_idx[train_idx < len(ds.train)]
        assert np.array_equal(own, np.flatnonzero(folds != k))
        taken = train_idx[train_idx >= n]
        assert np.array_equal(np.sort(taken), np.sort(rows[np.isin(sources, own)])) and len(taken) > 0
        assert not np.isin(sources[np.isin(rows, taken)], np.flatnonzero(folds == k)).any()
        assert np.array_equal(data.labels_of(rows), ds.labels("cat3")[sources])  # a copy keeps its label
    result = json.loads((tmp_path / "kfold/late_fusion/seed0/fold0/result.json").read_text())
    digest = result["config"]["identity"]["augmented_copies"]
    stamp = (tmp_path / "kfold/late_fusion/seed0/fold0/best.pt").stat().st_mtime_ns
    ensemble.kfold_predictions("late_fusion", ds, cfg, folds, [0], tmp_path, tmp_path, copies=variant)
    assert (tmp_path / "kfold/late_fusion/seed0/fold0/best.pt").stat().st_mtime_ns == stamp  # reused
    ensemble.kfold_predictions("late_fusion", ds, cfg, folds, [0], tmp_path, tmp_path, copies="text + image copies")
    again = json.loads((tmp_path / "kfold/late_fusion/seed0/fold0/result.json").read_text())
    assert again["config"]["identity"]["augmented_copies"] != digest  # other copies: retrained


def test_two_processes_train_the_kfold_units_with_the_same_result_as_one(ds, tmp_path):
    """`--processes 2`: the units of a K-fold in two worker processes (on CPU, each on half the cores) give what one
    process gives, unit by unit, also where augmentation draws random numbers (each unit has its own generators).
    Both data paths run in the workers: each text_finetuned unit (raw rows, augmented) first trains its
    text_frozen unit (cached states), whose checkpoint it starts from and names with its digest."""
    kind = "text_finetuned"
    from utils.ensemble import kfold_predictions, unit_processes
    from utils.splits import kfold

    settings = {"cache_dir": str(tmp_path / "cache"), "batch_size": 8, "n_folds": 2, "kfold.epochs": 2,
                "text_augment": "span,swap", "kfold.steps_per_epoch": 3}
    cfg = build("tiny", settings)
    folds = kfold(ds.labels("cat3"), 2, 0)
    one = kfold_predictions(kind, ds, cfg, folds, [0], tmp_path / "one", tmp_path / "one")
    two_cfg = build("tiny", {**settings, "processes": 2})
    assert unit_processes(two_cfg, 2) == 2 and unit_processes(cfg, 2) == 1
    two = kfold_predictions(kind, ds, two_cfg, folds, [0], tmp_path / "two", tmp_path / "two")
    for level in SIZES:
        assert np.allclose(one["oof"][level], two["oof"][level], atol=1e-5)
        assert np.allclose(one["test"][level], two["test"][level], atol=1e-5)
    assert [p.parent.name for p in two["checkpoints"]] == ["fold0", "fold1"]
    for run in ("one", "two"):  # as in 04, each unit starts from the frozen head trained on its own fold's rows
        start = json.loads((tmp_path / f"{run}/kfold/text_finetuned/seed0/fold1/result.json").read_text())
        assert start["config"]["identity"]["init_from"].startswith(f"{tmp_path}/{run}/kfold/text_frozen/seed0/fold1/best.pt@")
    frozen = {run: json.loads((tmp_path / f"{run}/kfold/text_frozen/seed0/fold1/result.json").read_text())
              for run in ("one", "two")}
    losses = {run: [epoch["val_loss_cat3"] for epoch in result["history"]] for run, result in frozen.items()}
    assert len(losses["one"]) == 2 and losses["one"] == pytest.approx(losses["two"], abs=1e-5)  # cached units too


def test_several_processes_find_the_warm_starts_cache_built_by_the_parent(ds, tmp_path, monkeypatch):
    """On a cold cache, workers that each built the frozen kind's states for their warm starts wrote one cache
    entry at once (one failed renaming it): the parent builds it before they start."""
    from utils import ensemble
    from utils.splits import kfold

    built, real = [], ensemble._kfold_data
    monkeypatch.setattr(ensemble, "_kfold_data", lambda kind, *a, **k: built.append(kind) or real(kind, *a, **k))

    def workers(*args, **kwargs):
        raise RuntimeError("the workers start here")

    monkeypatch.setattr(ensemble, "_run_parallel", workers)
    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache"), "processes": 2, "n_folds": 2})
    with pytest.raises(RuntimeError, match="the workers start here"):
        ensemble.kfold_predictions("text_finetuned", ds, cfg, kfold(ds.labels("cat3"), 2, 0), [0], tmp_path, tmp_path)
    assert built == ["text_finetuned", "text_frozen"]


def test_soft_targets_reach_the_same_rows_through_raw_rows_and_cached_states(ds, cache_dir):
    """Distillation's soft labels, end to end (raw rows) as in cached mode: the rows given one train on it, every
    other row on the one-hot of its label."""
    from utils.training import batches, soft_targets

    cfg = build("tiny", {"training_mode": "end_to_end", "cache_dir": str(cache_dir)})  # never the repository
    rows = np.arange(len(ds.train), len(ds.train) + 3)  # three test rows
    soft = {level: np.random.default_rng(0).dirichlet(np.ones(SIZES[level]), 3) for level in SIZES}
    picked = np.array([0, 1, *rows])
    for data in (RawRows(ds, cfg, ("text",)).with_soft_labels(rows, soft),
                 feature_data(ds, cfg, kind_spec("text_frozen").inputs).with_soft_labels(rows, soft)):
        batch = next(iter(batches(data, picked, 8)))
        assert batch["soft"].tolist() == [False, False, True, True, True]
        for level in SIZES:
            target = soft_targets(batch, level, SIZES[level]).numpy()
            assert np.allclose(target[2:], soft[level], atol=1e-6)
            assert (target[:2].argmax(1) == ds.labels(level)[:2]).all() and np.allclose(target[:2].sum(1), 1)


class CountingRows(RawRows):
    """Raw rows that note which rows this process fetched (a data-parallel process should fetch only its share)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fetched = []  # shared by the views the loaders draw from

    def __getitem__(self, i):
        self.fetched.append(int(i))
        return super().__getitem__(i)


def _count_all_reduces(counts: list):
    """DistributedDataParallel whose gradient all-reduces are counted (the default hook, counted)."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    class Counted(DistributedDataParallel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

            def hook(state, bucket):
                counts.append(bucket.index())
                return allreduce_hook(state, bucket)

            self.register_comm_hook(None, hook)

    return Counted


def _stops(kind: str) -> None:
    """A data-parallel process stopping as a training does at its time budget, or on a full disk."""
    from utils.io import DiskFull
    from utils.training import TimeBudgetExceeded

    raise {"budget": TimeBudgetExceeded, "disk": DiskFull}[kind](f"stopped: {kind}")


def test_a_stop_in_data_parallel_processes_reaches_the_notebook_as_itself():
    """run_all.sh tells a time-budget stop (exit 3) and a full disk (exit 4) from a failure by the exception's
    name: torch's ProcessRaisedException would make both failures."""
    from utils import distributed
    from utils.experiments import GROUP_STOPS as stops
    from utils.io import DiskFull
    from utils.training import TimeBudgetExceeded

    with pytest.raises(TimeBudgetExceeded, match="stopped: budget"):
        distributed.launch(_stops, 2, ("budget",), "cpu", stops)
    raised = Exception("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
                       "  ...\nutils.io.DiskFull: stopped: disk\n")  # torch's message, as the budget's above
    assert isinstance(distributed._as_stop(raised, stops), DiskFull) and distributed._as_stop(raised, ()) is None


def _fit_without_dropout(data_dir: str, cache: str, out: str) -> None:
    """One process of a data-parallel fit of an end-to-end fine-tune (or the single process), dropout off so that
    the only difference between one process and two is how each batch is split. Writes what this process
    fetched and, from process 0, its predictions on test rows."""
    from pathlib import Path

    from utils import distributed

    rank, _ = distributed.world()
    data_set = load_dataset(data_dir, progress=False, check_images=False)
    cfg = build("tiny", {"text_finetuned.training_mode": "end_to_end", "cache_dir": cache, "batch_size": 8})
    model = build_model("text_finetuned", cfg, SIZES)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    rows = CountingRows(data_set, cfg, ("text",))
    tc = replace(cfg.schedule("text_finetuned"), epochs=1, lr=1e-2, encoder_lr=1e-3, warmup_ratio=0.0, grad_accum=2)
    reduces = []
    torch.nn.parallel.DistributedDataParallel = _count_all_reduces(reduces)
    fit(model, rows, np.arange(21), np.arange(21, 28), tc, Path(out) / "run", verbose=False)  # batches 8, 8, 5
    fetched = list(rows.fetched)
    (Path(out) / f"fetched{rank}.json").write_text(json.dumps(fetched))
    (Path(out) / f"reduces{rank}.json").write_text(json.dumps(reduces.count(0)))  # rounds: bucket 0 goes every time
    if rank == 0:
        test_rows = np.arange(len(data_set.train), len(data_set.train) + 6)
        np.save(Path(out) / "probs.npy", predict(model, rows, test_rows, device="cpu")["cat3"])


def test_two_data_parallel_processes_train_one_model_as_one_process_does(tiny_data, cache_dir, tmp_path):
    """DistributedDataParallel on the CPU (gloo), as on two GPUs (nccl): each process fetches only its share of
    every batch, training and validation rows alike (together, every row once), and the trained model predicts
    what one process with whole batches trains (the last batch, 5 rows, splits 3 / 2: gradients weighed by share).
    Two micro-batches per optimiser step: the processes average gradients once per step (`no_sync` while they
    accumulate), not once per micro-batch."""
    from utils import distributed

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _fit_without_dropout(str(tiny_data), str(cache_dir), str(one))
    distributed.launch(_fit_without_dropout, 2, (str(tiny_data), str(cache_dir), str(two)), "cpu")
    shares = [json.loads((two / f"fetched{r}.json").read_text()) for r in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(28)) and [len(s) for s in shares] == [11 + 4, 10 + 3]
    assert sorted(json.loads((one / "fetched0.json").read_text())) == list(range(28))
    assert np.allclose(np.load(one / "probs.npy"), np.load(two / "probs.npy"), atol=1e-5)
    rounds = [json.loads((two / f"reduces{r}.json").read_text()) for r in (0, 1)]
    assert rounds == [2, 2], f"3 micro-batches in 2 optimiser steps: {rounds} gradient all-reduce rounds"


@pytest.mark.parametrize("kind", ["text_finetuned", "image_finetuned", "fusion_transformer"])
def test_gradient_checkpointing_gives_the_same_gradients(ds, kind):
    """What a T4 needs to fit the large encoders (activations recomputed in backward) changes memory, not training:
    every trained parameter gets the same gradient, and the layers really run through torch's checkpoint."""
    from torch.utils import checkpoint as ckpt

    grads, calls = {}, []
    real = ckpt.checkpoint
    for on in (False, True):
        cfg = build("tiny", {f"{kind}.training_mode": "end_to_end", "grad_checkpointing": on, "text_head": "layerwise",
                             "layerwise_depths": "-3,-2,-1"})
        model = build_model(kind, cfg, SIZES, seed=0).train()
        batch = next(iter(RawRows(ds, cfg).loader([np.arange(6)], "cpu")))
        from utils.inputs import to_device

        ckpt.checkpoint = lambda *a, **k: calls.append(on) or real(*a, **k)
        torch.manual_seed(0)  # the same dropout draws (checkpoint replays them in backward)
        try:
            model(to_device(batch, "cpu"))["cat3"].logsumexp(-1).sum().backward()
        finally:
            ckpt.checkpoint = real
        grads[on] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert calls and all(calls), "checkpointing on: every recomputed layer goes through checkpoint; off: none"
    assert grads[True].keys() == grads[False].keys() and len(grads[True]) > 10
    for name, g in grads[False].items():
        assert torch.allclose(g, grads[True][name], atol=1e-6, rtol=1e-4), name


def test_late_fusion_keeps_its_encoders_frozen_end_to_end(ds, tmp_path):
    """Late fusion is a frozen-encoder model in every mode: trained from raw rows, its heads learn and neither
    encoder moves (the full profile reads its pooled vectors from the cache instead)."""
    cfg = build("tiny", {"late_fusion.training_mode": "end_to_end", "batch_size": 8})
    model = build_model("late_fusion", cfg, SIZES)
    assert not any(p.requires_grad for p in [*model.text.parameters(), *model.image.parameters()])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tc = replace(cfg.schedule("late_fusion"), epochs=1, lr=1e-2, warmup_ratio=0.0)
    fit(model, model_data(ds, cfg, ["late_fusion"]), np.arange(8), np.arange(8, 12), tc, tmp_path / "lf", verbose=False)
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert moved and all(n.startswith("heads.") for n in moved)


def test_the_image_transforms_of_an_augmented_row_fire_independently(ds):
    """Flip, rotation, affine and colour each fire with their own p=0.5: about 1 draw in 16 leaves a training image
    as it was. One seed for all four made them fire together or not at all (1 in 2)."""
    rows = RawRows(ds, build("tiny", {"training_mode": "end_to_end", "image_augment": True}))
    view = rows.for_training(np.arange(20))
    draws = [(e, i) for e in range(8) for i in range(20) if rows.photos[i] is not None]
    unchanged = sum(torch.equal(view.at_epoch(e)[i]["pixels"], rows[i]["pixels"]) for e, i in draws)
    assert unchanged < 0.25 * len(draws), f"{unchanged} of {len(draws)} augmented draws left the image unchanged"


def test_a_shortened_full_profile_still_trains_the_frozen_heads():
    """`--set epochs=3` shortens the end-to-end models; the frozen heads (cached pooled vectors: seconds) still get
    the optimiser steps they need, in 04 and in the K-fold units that the fine-tunes warm-start from."""
    cfg = build("full", {"epochs": 3})
    for kind in ("text_frozen", "image_frozen", "late_fusion"):
        for stage in (None, "kfold"):
            schedule = cfg.schedule(kind, stage)
            assert schedule.training_mode == "cached" and schedule.min_steps >= 1000, (kind, stage)
