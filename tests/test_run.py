"""Runs and their configuration: one folder per run, every setting typed and overridable."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from utils.config import Config, ConfigError, build, parse_settings, resolve, run_dir
from utils.io import write_csv, write_json
from utils.run import start

REPO = Path(__file__).resolve().parent.parent
SIZES = {"cat1": 6, "cat2": 18, "cat3": 128}


def test_profiles_are_small_overrides_and_schedules_resolve_most_specific_last():
    demo, tiny = build("demo"), build("tiny")
    assert demo == Config(profile="demo")
    assert demo.schedule("fusion_transformer").epochs == 10
    assert demo.schedule("fusion_transformer", "kfold").epochs == 6  # kfold.fusion_transformer beats the kind
    assert demo.schedule("image_frozen", "kfold").epochs == 25        # the stage beats the base
    assert demo.schedule("text_finetuned", "kfold").epochs == 1       # the kind beats the stage
    assert build("full").fusion_ff == 2048 and build("full").fusion_width == 512
    one = build("tiny", {"epochs": "1"})
    assert {one.schedule(k).epochs for k in ("text_frozen", "image_frozen", "late_fusion", "image_vit")} == {1}
    assert tiny.n_folds == 3


def test_set_values_are_typed_and_unknown_keys_fail_listing_the_valid_ones():
    assert parse_settings(["n_folds=3", "lr=0.01", "kfold.fusion_transformer.epochs=4", "text_model=/m"]) == \
        {"n_folds": 3, "lr": 0.01, "kfold.fusion_transformer.epochs": 4, "text_model": "/m"}
    with pytest.raises(ConfigError, match="unknown configuration key 'n_fold'.*valid keys: .*n_folds"):
        parse_settings(["n_fold=3"])
    with pytest.raises(ConfigError, match="n_folds='three': expected int"):
        parse_settings(["n_folds=three"])
    with pytest.raises(ConfigError, match="unknown configuration key 'kfold.nope.epochs'"):
        parse_settings(["kfold.nope.epochs=2"])


def test_generated_datasets_are_named_by_size_and_an_unknown_size_fails():
    assert Path(resolve(build("demo", {"data_size": "second"})).data_dir).name == "generated-second"
    assert resolve(build("demo", {"data_size": "second"})).run_name == "demo-generated-second-seed0"
    with pytest.raises(ConfigError, match="data_size 'huge': choose one of .*second"):
        resolve(build("demo", {"data_size": "huge"}))


def test_run_all_rejects_an_unknown_key_before_running_anything(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run([str(REPO / "run_all.sh"), "--profile", "tiny", "--output-dir", str(tmp_path),
                          "--set", "epoch=1", "01"], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "unknown configuration key 'epoch'" in out.stderr and "epochs" in out.stderr
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written


def test_runs_with_other_seeds_get_their_own_folders_configs_and_splits(tiny_data, tmp_path):
    runs = [start("tiny", str(tiny_data), str(tmp_path), seed, settings={"n_folds": 2}) for seed in (0, 1)]
    assert [r.name for r in runs] == ["tiny-tiny-seed0", "tiny-tiny-seed1"] and runs[0].dir != runs[1].dir
    for r in runs:
        saved = json.loads((r.dir / "config.json").read_text(encoding="utf-8"))
        assert saved["seed"] == r.cfg.seed and saved["n_folds"] == 2 and saved["data_dir"] == str(tiny_data)
        assert r.cache_dir == tmp_path / "cache"  # shared, content-keyed; never the repository's outputs/
    splits = [r.validation_split(r.dataset(check_images=False)) for r in runs]
    assert not (splits[0][1] == splits[1][1]).all()
    files = [pd.read_csv(r.dir / "validation_split.csv") for r in runs]
    assert not files[0].equals(files[1])


def test_written_files_follow_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
        write_json({"a": 1}, tmp_path / "a.json")
        os.umask(0o077)
        write_json({"a": 1}, tmp_path / "private.json")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644  # mkstemp's 0600 used to survive the rename
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def test_a_checkpoint_of_another_shape_fails_loudly(tmp_path):
    from utils.models import build_model
    from utils.training import _trainable_state, load_checkpoint

    cfg = build("tiny")
    path = tmp_path / "best.pt"
    torch.save(_trainable_state(build_model("image_frozen", cfg, SIZES)), path)
    load_checkpoint(build_model("image_frozen", cfg, SIZES), path)  # its own model: fine
    with pytest.raises(RuntimeError, match=r"best\.pt: checkpoint does not fit the model .*heads\.heads\.cat3"):
        load_checkpoint(build_model("image_frozen", cfg, {**SIZES, "cat3": 10}), path)
    with pytest.raises(RuntimeError, match="not in this model"):
        load_checkpoint(build_model("text_frozen", cfg, SIZES), path)


def test_resolve_names_runs_and_keeps_caches_movable(tmp_path):
    cfg = resolve(build("demo", {"seed": 3, "cache_dir": str(tmp_path / "elsewhere")}))
    assert cfg.run_name == "demo-generated-seed3" and cfg.cache_dir == str(tmp_path / "elsewhere")
    assert run_dir(cfg).parent == Path(cfg.output_dir)
    with pytest.raises(ConfigError, match="runs on the real data"):
        resolve(build("full"))


def test_images_are_decoded_once_per_dataset_content(small_copy, tmp_path, monkeypatch):
    from utils import images

    folder = small_copy()
    run = start("tiny", str(folder), str(tmp_path))
    probed = []
    real = images.probe_image
    monkeypatch.setattr(images, "probe_image", lambda p: probed.append(p) or real(p))
    run.dataset()
    first = len(probed)
    run.dataset()
    assert first == 40 and len(probed) == first  # the same content: not decoded again
    image = sorted((folder / "image/train").glob("*.jpg"))[0]
    image.write_bytes(b"not an image any more")
    from utils.data import DataValidationError

    with pytest.raises(DataValidationError, match="cannot be decoded"):
        run.dataset()  # an edit is a new fingerprint: every image is checked again


def test_settings_that_cannot_work_are_refused_all_at_once_naming_key_and_range(capsys):
    from utils import run

    args = ["--set", "text_augment=spann", "--set", "n_folds=1", "--set", "kfold.epochs=0", "--set",
            "label_experts=text_tfidf,nope", "--set", "modality_dropout=1.5"]
    assert run.main(args) == 2
    err = capsys.readouterr().err
    for says in ("text_augment='spann'", "span, synonym, insert, swap, delete", "n_folds=1: must be at least 2",
                 "kfold.epochs=0", "'nope' not valid", "modality_dropout=1.5: must be from 0.0 to 0.99"):
        assert says in err, says


def test_imbalance_options_are_schedule_fields_so_06_can_use_what_03_measured():

    cfg = build("demo", {"kfold.sampling": "over", "kfold.fusion_transformer.mixup": "0.2", "class_weight": "balanced"})
    assert cfg.schedule("late_fusion", "kfold").sampling == "over"
    assert cfg.schedule("late_fusion").sampling == ""  # 04/05 keep plain draws
    assert cfg.schedule("fusion_transformer", "kfold").mixup == 0.2
    assert cfg.schedule("text_frozen").class_weight == "balanced"
    with pytest.raises(ConfigError, match="sampling='overr': choose one of '', 'over', 'under'"):
        build("demo", {"sampling": "overr"})


def test_one_models_processes_stay_one_per_gpu_and_a_pinned_gpu_takes_one(monkeypatch):
    """NCCL refuses two ranks of a group on one GPU ("Duplicate GPU detected"): a data-parallel group is capped
    at the GPUs (K-fold units, one process each, may share one); `device=cuda:N` would put every process there."""
    from utils import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.group_size(build("demo", {"processes": 2, "device": "cuda"})) == 1
    assert distributed.group_size(build("demo", {"processes": 2, "device": "cpu"})) == 2
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.group_size(build("demo", {"processes": 4})) == 2
    with pytest.raises(ConfigError, match="device='cuda:1' puts every process on that one GPU"):
        build("demo", {"device": "cuda:1"})
    assert build("demo", {"device": "cuda:1", "processes": 1}).device == "cuda:1"
    with pytest.raises(ConfigError, match="device='gpu': auto, cpu, cuda"):
        build("demo", {"device": "gpu"})
