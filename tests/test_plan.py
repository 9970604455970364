"""The resource plan (utils/plan/): parameter counts from models built on the meta device, per-item figures traced
on fake tensors equal to what real CPU tensors save, every platform preset fitting its card, RAM, disk and hour
budget, adapt changing nothing but how the same training runs, refusals that name the folder and the --set, the
command line's JSON, benchmarks/gpu_check.sh's CPU smoke run and refusal without CUDA, benchmarks/throughput.py
on the full profile's kinds. CPU only, nothing downloaded."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from utils import plan
from utils.config import build

REPO = Path(__file__).resolve().parent.parent
FULL = build("full")
RECIPE_KEYS = {"batch_size", "grad_accum", "grad_checkpointing", "processes", "num_workers", "checkpoint_minutes",
               "time_budget_hours", "cache_dir"}  # what adapt may change: how the same training runs
sys.path.insert(0, str(REPO / "benchmarks"))


def within(value, expected, share=0.05):
    return abs(value - expected) <= share * expected


def test_trained_parameters_from_meta_models():
    """The layer-wise RoBERTa-large fine-tune and the end-to-end fusion, counted by build_model's own code."""
    text, _ = plan.trained_parameters("text_finetuned", FULL)
    fusion, total = plan.trained_parameters("fusion_transformer", FULL)
    assert within(text, 361e6) and within(fusion, 649e6), (text, fusion)
    assert plan.trained_parameters("text_frozen", FULL)[0] < 1e6  # the frozen encoder is not trained
    assert next(plan.build("fusion_transformer", FULL).parameters()).device.type == "meta"
    assert plan.figures("fusion_transformer", FULL).trained == fusion  # the stored figures are this configuration's


def test_stored_figures_are_the_measured_ones():
    """RoBERTa-large at 256 tokens saves 590 MiB per item under half autocast and ViT-L/32 at 384 px 131 MiB
    (the README's measurement with real CPU tensors); the full profile's caches at the contest's size."""
    raw = replace(FULL, text_head="pooled")
    assert within(plan.figures("text_finetuned", raw).act_half / 2**20, 590, 0.01)
    assert within(plan.figures("text_finetuned", raw).act_fp32 / 2**20, 770, 0.01)
    assert within(plan.figures("image_finetuned", FULL).act_half / 2**20, 131, 0.01)
    assert within(plan.figures("image_finetuned", FULL).flops, 0.265e12, 0.01)
    fusion, image = plan.figures("fusion_transformer", FULL), plan.figures("image_finetuned", FULL)
    assert fusion.act_half > plan.figures("text_finetuned", raw).act_half + image.act_half
    rows = sum(plan.REAL_ROWS)
    tokens = plan._state_bytes(FULL, tokens=True)
    assert within(rows * tokens["text"], 25.4e9, 0.02) and within(rows * tokens["image"], 14.4e9, 0.02)
    assert plan._state_bytes(FULL, tokens=False)["text"] == 1024 * 4  # a pooled float32 vector per row
    assert within(plan.BYTES_LAST * plan.figures("fusion_transformer", FULL).trained, 7.8e9, 0.01)


def test_trace_equals_real_cpu_tensors():
    """Fake tensors save what real ones do: a tiny end-to-end fusion model (timm's test ViT), traced and run for
    real, to 0.1% (the real run saves a few hundred bytes more of 1.9 MB per item)."""
    cfg = build("tiny", {"fusion_transformer.training_mode": "end_to_end", "image_model": "test_vit",
                         "image_size": 160})
    traced = plan.trace("fusion_transformer", cfg)
    model = plan.build("fusion_transformer", cfg, device="cpu").train()
    saved = {n: plan._saved(model, plan._batch("fusion_transformer", cfg, None, model, n), "bf16")[0] for n in (1, 2)}
    assert saved[2] - saved[1] > 0 and within(traced.act_half, saved[2] - saved[1], 0.001)
    assert traced.trained == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < traced.act_ckpt < traced.act_half and traced.infer > 0 and traced.flops > 0


@pytest.mark.parametrize("name", list(plan.PLATFORMS))
def test_adapt_fits_training_on_every_platform_keeping_the_training(name):
    """adapt changes only how the same training runs (the effective batch stays) and every training fit then fits
    the card."""
    platform = plan.PLATFORMS[name]
    adapted, notes = plan.adapt(FULL, platform)
    assert adapted.batch_size * adapted.grad_accum == FULL.batch_size * FULL.grad_accum
    assert set(plan.changed_settings(FULL, adapted)) <= RECIPE_KEYS
    assert all(note.split("=")[0] in RECIPE_KEYS for note in notes)
    for fit in plan.make_plan(adapted, platform).fits:
        if fit.kind not in plan.TRAINING_KINDS:
            assert fit.gpu_memory_gb <= 0.95 * platform.gpu_memory_gb, (name, fit)


@pytest.mark.parametrize("name", list(plan.PLATFORMS))
def test_every_preset_fits_its_platform(name):
    """--set platform=NAME: every fit within the card's memory, the RAM and the disk, the run's disk at its fullest
    and the hour budget; what was given up is said."""
    platform = plan.PLATFORMS[name]
    fitted, notes = plan.preset(FULL, name)
    result = plan.make_plan(fitted, platform)
    for fit in result.fits:  # the platforms' nominal sizes, 5% kept free
        assert fit.gpu_memory_gb <= 0.95 * platform.gpu_memory_gb and fit.host_ram_gb <= 0.95 * platform.host_ram_gb
    cache_disk = platform.cache_disk_gb or platform.disk_gb
    assert result.disks_gb["run"] <= 0.95 * platform.disk_gb and result.disks_gb["cache"] <= 0.95 * cache_disk
    assert not platform.budget_hours or result.hours <= platform.budget_hours
    assert fitted.batch_size * fitted.grad_accum == 64 and fitted.platform == name
    assert not plan.problems(fitted, platform)
    gave_up = [n for n in notes if n.startswith("gave up: ")]
    assert gave_up and all("--set " in n for n in gave_up)  # the full recipe fits none of them
    if name in ("a100-40", "h100-80"):  # 5 folds x 5 seeds x 3 members, students too: 250 GB of checkpoints
        assert [n.split(" (")[0] for n in gave_up] == ["gave up: distillation"]


def test_a_run_starts_from_its_platform_preset_keeping_what_the_user_set():
    """plan.prepare, what run_all.sh calls: with `platform` set, the preset, never overriding the user's keys."""
    cfg, notes, found = plan.prepare(replace(FULL, platform="h100-80"))
    assert cfg.platform == "h100-80" and not cfg.distill and found == [] and notes
    cfg, notes, found = plan.prepare(replace(FULL, platform="h100-80"), keep={"distill"})
    assert cfg.distill and found == []  # something else is given up instead
    assert notes and not any(n.startswith("gave up: distillation") for n in notes)


def test_too_little_disk_names_the_folder_and_the_setting(tmp_path):
    """A cache on a disk without room: refused before anything runs, naming the folder and the --set."""
    cfg = replace(plan.preset(FULL, "h100-80")[0], output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    found = plan.problems(cfg, "h100-80", free_disk={str(tmp_path / "cache"): 0.01, str(tmp_path): 1000.0})
    assert len(found) == 1 and str(tmp_path / "cache") in found[0] and "--set cache_dir=" in found[0]
    assert not plan.problems(cfg, "h100-80", free_disk={str(tmp_path): 1000.0})
    small = plan.problems(cfg, "h100-80", free_disk={str(tmp_path): 20.0})
    assert any("run folder" in p and "--set output_dir=" in p for p in small)


def test_what_does_not_fit_names_the_set_that_fits():
    """As configured on a T4 the fusion model does not fit the card: the problem says which --set makes it fit."""
    found = plan.problems(FULL, "colab-t4")
    gpu = [p for p in found if p.startswith("05 fusion_transformer") and "GPU memory" in p]
    assert gpu and "--set" in gpu[0]
    assert any("--set platform=colab-t4" in p and "gives up" in p for p in found)


@pytest.mark.parametrize("profile", ["demo", "tiny"])
def test_the_stored_figures_are_what_the_models_trace_now(profile):
    """plan_figures.json is `--measure`'s output; a figure the current models no longer give (a stale file, an
    edited model) fails here rather than misplanning quietly. The tiny profile's are stored too: every run_all.sh
    of the tests plans its disk before the first notebook, and tracing them took 20 s of each."""
    from utils import kinds
    from utils.config import STAGES, build

    cfg, stored = build(profile), plan._stored_figures()
    keys = {plan.signature(kind, cfg, stage): (kind, stage) for kind in kinds.names(cfg=cfg) if kind != "text_tfidf"
            for stage in (None, *STAGES)}
    checked = [key for key in keys if key in stored]
    assert len(checked) >= 5
    for key in checked:
        assert plan.as_stored(plan.trace(keys[key][0], cfg, keys[key][1])) == plan.as_stored(stored[key]), key


def test_gpu_measurements_replace_the_traced_figures(tmp_path, monkeypatch):
    """A gpu_check CSV's activations per item replace the traced ones (for every card) in the plan, for the model
    shape measured only: the demo profile's smaller fusion model keeps its traced figures."""
    adapted, _ = plan.adapt(FULL, "h100-80")
    demo = plan.adapt(build("demo"), "h100-80")[0]

    def fusion_fit(folder, cfg=adapted):
        monkeypatch.setattr(plan.measured, "RESULTS", folder)
        plan.gpu_measurements.cache_clear()
        return next(f for f in plan.make_plan(cfg, "h100-80").fits if f.kind == "fusion_transformer")

    key = plan.signature("fusion_transformer", adapted, fusion_fit(tmp_path).stage)
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "gpu_check-H100-20261207-120000.csv").write_text(
        "kind,phase,checkpointing,act_mib_per_item,verdict,gpu,signature\n"
        f"fusion_transformer,train,False,2000,ok,NVIDIA H100,{key}\n")
    try:
        before, after = fusion_fit(tmp_path), fusion_fit(tmp_path / "gpu")
        demo_before, demo_after = fusion_fit(tmp_path, demo), fusion_fit(tmp_path / "gpu", demo)
    finally:
        plan.gpu_measurements.cache_clear()
    grown = (2000 * 2**20 - plan.figures("fusion_transformer", FULL).act_half) * adapted.batch_size / plan.GB
    assert after.gpu_memory_gb == pytest.approx(before.gpu_memory_gb + grown, rel=1e-6)
    assert demo_after.gpu_memory_gb == demo_before.gpu_memory_gb


def test_command_line_json(capsys):
    assert plan.main(["--profile", "full", "--platform", "kaggle-2xt4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"fits", "disk_gb", "hours", "problems", "settings", "platform"} <= set(out)
    keys = {"notebook", "kind", "trained_params", "gpu_memory_gb", "host_ram_gb", "disk_gb", "hours"}
    assert out["fits"] and all(keys <= set(fit) for fit in out["fits"])
    assert {f["notebook"] for f in out["fits"]} == {"02", "03", "04", "05", "06", "07"}
    assert out["problems"] == [] and out["settings"]["platform"] == "kaggle-2xt4"


def _without_provenance(value):
    """The plan's JSON as it was before each figure carried its provenance (and the table of constants, and the
    rate of tagging a catalogue)."""
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if k not in ("provenance", "constants", "tagging")}
    return [_without_provenance(v) for v in value] if isinstance(value, list) else value


def test_the_full_profiles_plan_on_every_platform_is_unchanged(tmp_path, monkeypatch, capsys):
    """`--profile full --platform all --json` equals tests/data/plan_full_all.json, which the single-module plan
    wrote: every figure, setting, note and problem (the per-item figures are stored or traced on fake tensors, so
    deterministic; no gpu_check CSV is read, as none is in that file). Each figure names what it rests on: only
    rows of the table of constants, and those it calls assumed are assumed there."""
    monkeypatch.setattr(plan.measured, "RESULTS", tmp_path)
    plan.gpu_measurements.cache_clear()
    try:
        assert plan.main(["--profile", "full", "--platform", "all", "--json"]) == 0
    finally:
        plan.gpu_measurements.cache_clear()
    out = json.loads(capsys.readouterr().out)
    golden = json.loads((REPO / "tests" / "data" / "plan_full_all.json").read_text(encoding="utf-8"))
    assert _without_provenance(out) == golden
    constants = out["constants"]
    for one in out["plans"]:
        for fit in one["fits"]:
            figures = {k for k in ("gpu_memory_gb", "host_ram_gb", "disk_gb", "hours") if fit[k]}
            assert figures <= set(fit["provenance"]), (fit["kind"], fit["what"])
            for said in fit["provenance"].values():
                assert all(constants[name]["basis"] == "assumed" for name in said["assumed"])
                assert all(m in constants or " " in m for m in said["measured"])  # a constant, or where
        assert one["provenance"]["platform.mfu"]["assumed"] == [plan.platforms.mfu_constant(plan.PLATFORMS[
            one["platform"]["name"]])]


def test_gpu_check_cpu_smoke(tmp_path, capsys):
    """The CPU smoke run: every step of the check on tiny shapes (in this process: torch is loaded already), a CSV
    of the measurements; the shell script runs the same file (its --help, without importing torch)."""
    import csv

    import gpu_check

    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path)]) == 0
    with open(next(tmp_path.glob("gpu_check-*.csv")), encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"host", "train", "predict", "loader"} <= {row["phase"] for row in rows}
    train = next(row for row in rows if row["phase"] == "train")
    assert float(train["items_per_s"]) > 0 and float(train["planned_items_per_s"]) > 0 and train["verdict"] == "smoke"
    assert "precision fp32" in capsys.readouterr().out
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--cpu-smoke" in done.stdout


def test_gpu_check_goes_on_past_a_failed_measurement(tmp_path, monkeypatch, capsys):
    """A measurement that fails leaves an error row and the others; exit 3. The loader measures decoding alone
    where albumentations is missing (a GPU machine with its own packages), and says so."""
    import importlib.util
    from dataclasses import replace

    import gpu_check

    def broken(*args):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(gpu_check, "measure_kind", broken)
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "fusion_transformer" in out and "error RuntimeError: CUDA out of memory" in out
    assert "loader" in out.split("error RuntimeError")[1]  # measured after the failure
    cfg = gpu_check.setup(True, None)[0]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "albumentations" else
                        find_spec(name, *a))
    row = gpu_check.measure_loader(replace(cfg, image_augment=True), None, "cpu", True)
    assert "albumentations is not installed" in row["note"] and row["items_per_s"] > 0


def test_gpu_check_refuses_without_cuda(monkeypatch, capsys):
    import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    assert "CUDA" in capsys.readouterr().err
    assert gpu_check.verdict(10.0, 9.0, "memory") == "over" and gpu_check.verdict(9.0, 10.0, "memory") == "ok"
    assert gpu_check.verdict(5.0, 10.0, "speed") == "over" and gpu_check.verdict(9.0, 10.0, "speed") == "ok"


def test_throughput_on_the_full_profiles_kinds(capsys):
    """The full profile's settings (end to end, a ViT image model): the fusion model is timed on cached states and
    the hybrid ViT, which a ViT cannot be, is reported instead of crashing."""
    import throughput

    argv = ["--profile", "tiny", "--set", "image_model=test_vit", "--set", "image_size=160", "--set",
            "training_mode=end_to_end", "--random-weights", "--batch-size", "2", "--repeats", "1", "--kinds",
            "image_vit,fusion_transformer", "--device", "cpu"]
    assert throughput.main(argv) == 0
    out = capsys.readouterr().out
    assert "image_vit" in out and "not timed" in out and "fusion_transformer" in out


def test_tagging_on_a_gpu_counts_the_members_crossing_to_the_card_once_per_block(monkeypatch):
    """The predictor moves each member's units to the card once per block (utils/predict.py): the full profile's
    25 units a member on an H100 are tens of GB a block, seconds that its FLOPs alone leave out. The CPU moves
    nothing."""
    from utils.plan import costs

    cfg, h100, cpu = plan.adapt(FULL, "h100-80")[0], plan.PLATFORMS["h100-80"], plan.detect_platform()
    rate = {}
    for rows in (512, 2048):  # a catalogue's chunk is one call of the predictor: its block where shorter
        monkeypatch.setattr(costs, "CATALOGUE_CHUNK_ROWS", rows)
        rate[rows] = costs.tagging(cfg, h100)["rows_per_s"]
    monkeypatch.setattr(costs, "HOST_TO_DEVICE_GBS", 1e15)
    unbounded = costs.tagging(cfg, h100)["rows_per_s"]
    assert rate[512] < 0.85 * unbounded and rate[512] < rate[2048] < unbounded
    assert "HOST_TO_DEVICE_GBS" in costs.tagging(cfg, h100)["provenance"]["assumed"]
    on_cpu = costs.tagging(FULL, cpu)
    monkeypatch.setattr(costs, "HOST_TO_DEVICE_GBS", 1.0)
    assert costs.tagging(FULL, cpu) == on_cpu and "HOST_TO_DEVICE_GBS" not in on_cpu["provenance"]["assumed"]


def test_the_plans_code_constants_are_the_predictors():
    """PREDICT_BATCH, PREDICT_BLOCK_ROWS and CATALOGUE_CHUNK_ROWS restate utils/predict.py's batch and GPU block
    and utils/catalogue.py's chunk for the plan."""
    import inspect

    from utils import catalogue, predict

    batch = inspect.signature(predict.Predictor.probabilities).parameters["batch_size"].default
    assert plan.PREDICT_BATCH == batch and plan.assumed.PREDICT_BLOCK_ROWS == predict.BLOCK_ROWS
    assert plan.assumed.CATALOGUE_CHUNK_ROWS == catalogue.CHUNK_ROWS


def test_tagging_waits_for_the_photos_only_where_a_member_reads_them(monkeypatch):
    """A block is read whole before its members run: on a GPU the photos' decoding adds to the members' time
    (not hidden behind it), and a text-only ensemble decodes none."""
    from utils.plan import costs

    t4, demo = plan.PLATFORMS["colab-t4"], build("demo")
    text_only = build("demo", {"kfold_models": "text_tfidf,text_frozen"})
    before = {name: costs.tagging(cfg, t4)["rows_per_s"] for name, cfg in (("demo", demo), ("text", text_only))}
    monkeypatch.setattr(costs, "loader_rate", lambda workers: 1e12)
    assert costs.tagging(demo, t4)["rows_per_s"] > 1.1 * before["demo"]
    assert costs.tagging(text_only, t4)["rows_per_s"] == before["text"]
