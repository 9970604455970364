"""The training engine: resume after an interruption, skip when unchanged, determinism, sampling."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import utils.training as training
from utils.models import build_model
from utils.config import build
from utils.features import TensorData
from utils.training import epoch_indices, fit

SIZES = {"cat1": 6, "cat2": 18, "cat3": 128}


def toy_data(n=120, seed=0):
    """Image-token features whose cat3 is readable from them, with consistent parents."""
    g = torch.Generator().manual_seed(seed)
    cat3 = torch.randint(0, 8, (n,), generator=g)
    x = torch.randn(n, 4, 1280, generator=g) * 0.1
    x[torch.arange(n), :, cat3] += 3.0
    return TensorData({"image_final": x, "cat1": cat3 % 6, "cat2": cat3 % 18, "cat3": cat3})


def model():
    return build_model("image_frozen", build("tiny"), SIZES, seed=0)


CFG = dict(epochs=4, batch_size=16, lr=5e-3, patience=10, device="cpu")
PLAIN = dict(encoder_lr=0.0, warmup_ratio=0.1, grad_accum=1, loss_weights=(0.1, 0.1, 0.8), class_weight="", sampling="",
             mixup=0.0, precision="auto", layer_decay=1.0, steps_per_epoch=0, min_steps=0, optimizer="adamw",
             lr_schedule="cosine", grad_clip=1.0, distill_weight=0.0, weight_decay=0.01, seed=0)


def schedule(**changes):
    """The tiny profile's schedule with the plain settings of these tests, and `changes`."""
    return replace(build("tiny").schedule("image_frozen"), **{**PLAIN, **CFG, **changes})
TRAIN, VAL = np.arange(0, 90), np.arange(90, 120)


def test_learns_and_keeps_history(tmp_path):
    result = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    assert len(result.history) == 4 and result.best_score > 0.3  # chance is about 0.12 on 8 classes
    assert (tmp_path / "run/best.pt").exists() and (tmp_path / "run/result.json").exists()
    assert not (tmp_path / "run/last.pt").exists()


def test_same_config_is_not_retrained_but_a_change_is(tmp_path):
    first = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    again = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    assert again.skipped and again.best_score == first.best_score
    changed = fit(model(), toy_data(), TRAIN, VAL, schedule(**{"lr": 1e-3}), tmp_path / "run", verbose=False)
    assert not changed.skipped
    relabelled = toy_data()
    relabelled.tensors["cat3"][3] = (relabelled.tensors["cat3"][3] + 1) % 8  # one corrected label
    again = fit(model(), relabelled, TRAIN, VAL, schedule(**{"lr": 1e-3}), tmp_path / "run", verbose=False)
    assert not again.skipped
    other = model()  # the same layers, other weights trained (as a code change may decide): its best.pt and
    next(p for p in other.parameters() if p.requires_grad).requires_grad = False  # moments would not fit
    assert repr(other) == repr(model())
    assert not fit(other, relabelled, TRAIN, VAL, schedule(**{"lr": 1e-3}), tmp_path / "run", verbose=False).skipped


def test_the_validation_pass_handed_back_is_the_best_epochs_and_what_best_pt_predicts(tmp_path):
    data, cfg = toy_data(), schedule(**{"epochs": 8, "lr": 0.3})  # too high a rate: the last epoch is not the best
    result = fit(model(), data, TRAIN, VAL, cfg, tmp_path / "run", verbose=False)
    assert result.best_epoch < len(result.history) - 1
    again = training.predict(result.model, data, VAL, device="cpu")
    assert all(np.allclose(result.val_probs[level], again[level], atol=1e-6) for level in SIZES)
    assert fit(model(), data, TRAIN, VAL, cfg, tmp_path / "run", verbose=False).val_probs is None  # skipped: predicted


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    reference = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "ref", verbose=False)
    real_predict, calls = training.predict, {"n": 0}

    def crash_on_third_validation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("Colab disconnected")
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(training, "predict", crash_on_third_validation)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    assert (tmp_path / "run/last.pt").exists() and not (tmp_path / "run/result.json").exists()
    monkeypatch.setattr(training, "predict", real_predict)
    resumed = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    assert resumed.resumed and len(resumed.history) == 4
    assert [h["val_weighted_f1_cat3"] for h in resumed.history] == [h["val_weighted_f1_cat3"] for h in reference.history]
    assert resumed.history[-1]["train_loss"] == pytest.approx(reference.history[-1]["train_loss"], rel=1e-5)


def test_seeded_runs_repeat(tmp_path):
    a = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "a", verbose=False)
    b = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "b", verbose=False)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


@pytest.mark.parametrize("option", [{"class_weight": "balanced"}, {"sampling": "over"}, {"sampling": "under"},
                                    {"mixup": 0.4}, {"grad_accum": 2}])
def test_imbalance_options_train(tmp_path, option):
    result = fit(model(), toy_data(), TRAIN, VAL, schedule(**option), tmp_path / "run", verbose=False)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_sampling_rules():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    rng = np.random.default_rng(0)
    assert sorted(epoch_indices(labels, "", rng)) == list(range(100))
    over = labels[epoch_indices(labels, "over", rng)]
    assert len(over) == 100 and (over == 2).sum() > 5 and (over == 0).sum() < 80
    under = labels[epoch_indices(labels, "under", rng)]
    assert np.bincount(under).tolist() == [15, 15, 5]


def test_steps_per_epoch_caps_each_epoch_to_a_fresh_share_of_the_rows(tmp_path, monkeypatch):
    drawn = []
    original = training.batches

    def counting(data, indices, batch_size, device="cpu", rank=0, world=1, epoch=0):
        if len(indices) != len(VAL):  # training draws, not validation
            drawn.append(np.asarray(indices).copy())
        yield from original(data, indices, batch_size, device, rank, world, epoch)

    monkeypatch.setattr(training, "batches", counting)
    fit(model(), toy_data(), TRAIN, VAL, schedule(**{"epochs": 2, "steps_per_epoch": 2}), tmp_path / "run",
        verbose=False)
    assert [len(d) for d in drawn] == [32, 32]  # 2 steps of 16 rows per epoch, not all 90
    assert set(drawn[0]) <= set(TRAIN) and set(drawn[0]) != set(drawn[1])


def test_min_steps_gives_a_smaller_dataset_more_epochs(tmp_path):
    """A schedule sized in optimiser steps trains as much on a third of the rows: 90 rows in batches of 16 are 6
    steps an epoch, so 2 epochs with min_steps 30 become 5; a dataset big enough keeps its epochs."""
    few = fit(model(), toy_data(), TRAIN, VAL, schedule(**{"epochs": 2, "min_steps": 30}), tmp_path / "a",
              verbose=False)
    assert len(few.history) == 5
    enough = fit(model(), toy_data(), TRAIN, VAL, schedule(**{"epochs": 2, "min_steps": 12}),
                 tmp_path / "b", verbose=False)
    assert len(enough.history) == 2
    assert build("demo").schedule("fusion_transformer", "kfold").min_steps == 300
    assert build("demo").schedule("image_frozen", "kfold").min_steps == 1250


def test_time_budget_stops_mid_epoch_and_a_rerun_matches_an_uninterrupted_run(tmp_path, countdown):
    whole = fit(model(), toy_data(), TRAIN, VAL, schedule(mixup=0.2), tmp_path / "whole", verbose=False)
    for budget in (countdown(3), countdown(7)):  # stops within epoch 1, then within epoch 2
        with pytest.raises(training.TimeBudgetExceeded, match="time budget"):
            fit(model(), toy_data(), TRAIN, VAL, schedule(mixup=0.2), tmp_path / "cut", verbose=False,
                budget=budget)
        assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["within"]["step"] > 0
    again = fit(model(), toy_data(), TRAIN, VAL, schedule(mixup=0.2), tmp_path / "cut", verbose=False)
    assert again.resumed
    assert [h["val_weighted_f1_cat3"] for h in again.history] == [h["val_weighted_f1_cat3"] for h in whole.history]
    assert [h["train_loss"] for h in again.history] == pytest.approx([h["train_loss"] for h in whole.history])
    for (name, a), b in zip(whole.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_fp16_trains_with_loss_scaling_on_the_cpu_as_on_a_t4(tmp_path, countdown):
    """The T4's precision, run here: fp16 autocast and a GradScaler whose state is saved for a resume."""
    with pytest.raises(training.TimeBudgetExceeded):
        fit(model(), toy_data(), TRAIN, VAL, schedule(precision="fp16"), tmp_path / "run", verbose=False,
            budget=countdown(3))
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["scaler"]["scale"] > 1
    result = fit(model(), toy_data(), TRAIN, VAL, schedule(precision="fp16"), tmp_path / "run", verbose=False)
    assert result.resumed and result.best_score > 0.3


@pytest.mark.parametrize("first,then", [("bf16", "fp16"), ("fp16", "bf16"), ("fp32", "fp16")])
def test_a_run_resumes_on_another_gpu_kind(tmp_path, countdown, monkeypatch, first, then):
    """`precision=auto` is bf16 on an A100 or L4 and fp16 on a T4 (Colab hands out either from one session to the
    next): a checkpoint of one resumes under the other, with the loss scaler started afresh or left off."""
    resolved = {"now": first}
    monkeypatch.setattr(training, "choose_precision", lambda device, precision: resolved["now"])
    with pytest.raises(training.TimeBudgetExceeded):
        fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False, budget=countdown(3))
    resolved["now"] = then
    result = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    assert result.resumed and len(result.history) == 4


def test_the_saved_random_state_is_the_gpu_this_process_draws_on(monkeypatch):
    """A K-fold unit stopped on GPU 1 may resume in a worker on GPU 0: the state it drew from goes to the GPU it
    draws from now. A checkpoint with every GPU's state (older ones) gives the current GPU its own."""
    states = [torch.tensor([i], dtype=torch.uint8) for i in range(2)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: states[1])
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    saved = training.rng_states()
    assert saved["cuda_rng"] is states[1]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    training.set_rng_states(saved)
    training.set_rng_states({**saved, "cuda_rng": states})
    assert restored == [states[1], states[0]]


def test_the_learning_rate_steps_with_the_optimiser_not_with_steps_fp16_skipped(monkeypatch, tmp_path):
    """An fp16 step that overflows is skipped by the GradScaler (whose scale then shrinks): the schedule does
    not advance for it, or warm-up would end early by the skipped steps."""
    scale, calls = [65536.0], []

    def update(self, new_scale=None):  # the first step overflows (the scale halves), then none do
        scale[0] = 32768.0

    real = torch.optim.lr_scheduler.LambdaLR.step
    monkeypatch.setattr(torch.amp.GradScaler, "get_scale", lambda self: scale[0])
    monkeypatch.setattr(torch.amp.GradScaler, "update", update)
    monkeypatch.setattr(torch.optim.lr_scheduler.LambdaLR, "step", lambda self, *a: calls.append(1) or real(self, *a))
    result = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    steps = sum(1 for _ in result.history) * int(np.ceil(len(TRAIN) / schedule().batch_size))
    assert len(calls) == 1 + steps - 1  # one when built (torch steps a new schedule once), one per step taken


def test_distillation_weight_is_the_9th_places_mean_of_train_rows_plus_weighted_mean_of_soft_rows():
    torch.manual_seed(0)
    logits = {level: torch.randn(6, n) for level, n in (("cat1", 6), ("cat2", 18), ("cat3", 128))}
    soft = torch.tensor([False, False, True, False, True, True])
    batch = {"cat1": torch.tensor([0, 1, -1, 2, -1, -1]), "cat2": torch.tensor([0, 1, -1, 2, -1, -1]),
             "cat3": torch.tensor([0, 1, -1, 2, -1, -1]), "soft": soft}
    for level, n in (("cat1", 6), ("cat2", 18), ("cat3", 128)):
        batch[f"soft_{level}"] = torch.softmax(torch.randn(6, n), -1)
    losses = {level: torch.nn.CrossEntropyLoss() for level in logits}
    weights = {"cat1": 0.05, "cat2": 0.15, "cat3": 0.8}

    def mean_ce(rows, targets):
        return sum(w * torch.nn.functional.cross_entropy(logits[l][rows], targets(l)[rows]) for l, w in weights.items())

    hard = mean_ce(~soft, lambda l: batch[l])
    taught = mean_ce(soft, lambda l: batch[f"soft_{l}"])
    got = training._loss(logits, batch, losses, weights, None, 1.0, distill_weight=0.3)
    assert torch.allclose(got, hard + 0.3 * taught)
    pooled = training._loss(logits, batch, losses, weights, None, 1.0)  # 0: one mean over every row
    assert torch.allclose(pooled, (3 * hard + 3 * taught) / 6)


def test_the_step_schedule_halves_the_rate_every_ten_epochs_and_radam_is_used(tmp_path, monkeypatch):
    seen = {}
    real = training._scheduler

    def spy(optimizer, cfg, steps_per_epoch, epochs):
        seen["optimizer"], seen["steps"] = type(optimizer).__name__, steps_per_epoch
        seen["scheduler"] = real(optimizer, cfg, steps_per_epoch, epochs)
        return seen["scheduler"]

    monkeypatch.setattr(training, "_scheduler", spy)
    fit(model(), toy_data(), TRAIN, VAL, schedule(**{"epochs": 12, "optimizer": "radam", "lr_schedule": "step"}),
        tmp_path / "run", verbose=False)
    assert seen["optimizer"] == "RAdam"
    assert seen["scheduler"].get_last_lr()[0] == pytest.approx(CFG["lr"] * 0.5)  # 12 epochs: halved once


def test_the_notebooks_time_budget_reaches_every_fit_not_only_06s(tmp_path, countdown):
    """`time_budget_hours` is the notebook's (run.start sets it): a plain fit of 04 or 05 stops cleanly too."""
    training.set_session_budget(countdown(3))
    try:
        with pytest.raises(training.TimeBudgetExceeded):
            fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    finally:
        training.set_session_budget(None)
    assert fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False).resumed


@pytest.mark.parametrize("damaged", ["best.pt", "result.json", "last.pt"])
def test_a_damaged_file_is_named_and_its_work_redone_to_the_same_result(tmp_path, capsys, countdown, damaged):
    """A half-copied checkpoint (from Drive, a full disk) is never loaded into a wrong answer: named, set aside,
    and the unit trains again to what it gave before."""
    first = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    if damaged == "last.pt":
        with pytest.raises(training.TimeBudgetExceeded):
            fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "cut", verbose=False, budget=countdown(3))
        run = tmp_path / "cut"
    else:
        run = tmp_path / "run"
    path = run / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    again = fit(model(), toy_data(), TRAIN, VAL, schedule(), run, verbose=False)
    assert f"{path}: cannot be read" in capsys.readouterr().out
    assert not again.skipped and not again.resumed and (run / f"{damaged}.damaged").exists()
    assert [h["val_weighted_f1_cat3"] for h in again.history] == [h["val_weighted_f1_cat3"] for h in first.history]


def test_a_damaged_checkpoint_given_to_load_is_refused_with_its_path_and_the_way_out(tmp_path):
    fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"best.pt: cannot be read .*rerun the notebook"):
        training.load_checkpoint(model(), tmp_path / "run" / "best.pt")


def test_a_plateau_in_validation_f1_keeps_the_epoch_of_lowest_validation_loss(tmp_path, monkeypatch):
    """A head stuck on the majority class scores the same F1 every epoch while it learns (its loss falls): the
    checkpoint kept (best.pt, what a fine-tune warm-starts from) must be the learnt one, not the first epoch's."""
    monkeypatch.setattr(training, "weighted_f1", lambda y, p: 0.2)  # every epoch ties, as on a majority-class plateau
    result = fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", verbose=False)
    losses = [h["val_loss_cat3"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_epoch == int(np.argmin(losses))


def test_mixup_keeps_the_data_parallel_processes_generators_together():
    """Two processes holding 7 and 6 rows of a 13-row batch draw as many numbers for mixup, so that their shared
    generator (which also draws the next epoch's order) stays the same in both; one process mixes as before."""
    from utils.training import _mix

    def batch(n):
        return {"cat3": torch.arange(n), "image_final": torch.randn(n, 4)}

    ranks = [np.random.default_rng(0) for _ in range(2)]
    for rng, n in zip(ranks, (7, 6)):
        mixed, perm, _ = _mix(batch(n), 0.4, rng, whole=13)
        assert sorted(perm.tolist()) == list(range(n))
    assert ranks[0].permutation(20).tolist() == ranks[1].permutation(20).tolist()
    alone, before = np.random.default_rng(0), np.random.default_rng(0)
    _, perm, lam = _mix(batch(13), 0.4, alone)
    assert lam == float(before.beta(0.4, 0.4)) and perm.tolist() == before.permutation(13).tolist()


def test_a_loss_that_is_not_finite_stops_training_naming_the_model_and_the_way_out(tmp_path, monkeypatch):
    """A loss NaN in most batches of an epoch (fp16 overflow in the forward, a learning rate far too high) stops
    the fit with what to change, instead of training on garbage (under fp16 the GradScaler would skip every step
    without a word)."""
    real = training._loss
    monkeypatch.setattr(training, "_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(training.TrainingDiverged, match=r"fold0: the loss was NaN or infinite in 6 of 6 batches of "
                                                         r"epoch 1 \(fp32\).*Lower the learning rate"):
        fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "run", name="fold0", verbose=False)
    monkeypatch.setattr(training, "choose_precision", lambda device, precision: "fp16")
    with pytest.raises(training.TrainingDiverged, match=r"\(fp16\).*--set precision=fp32"):
        fit(model(), toy_data(), TRAIN, VAL, schedule(), tmp_path / "half", name="fold0", verbose=False)
