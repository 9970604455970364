"""A full disk, for real: a small tmpfs mounted for the test (skipped where mounting is not allowed)."""
import subprocess
import uuid

import numpy as np
import pytest

from utils.io import DiskFull, atomic_path


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", f"tmpfs-{uuid.uuid4().hex[:6]}", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_a_write_to_a_full_disk_names_the_folder_and_leaves_nothing_half_written(small_disk):
    with pytest.raises(DiskFull, match=rf"{small_disk}: the disk is full while writing big.bin .*--output-dir"):
        with atomic_path(small_disk / "big.bin") as tmp:
            tmp.write_bytes(b"x" * 3 * 2**20)
    assert list(small_disk.iterdir()) == []


def test_the_cache_stops_cleanly_on_a_full_disk_and_resumes_after_space_is_freed(small_disk):
    """A memory-mapped write to a full disk would kill the process (SIGBUS): its blocks are reserved first, so
    the pass stops with DiskFull, keeps its finished chunks, and the same call completes once space is free."""
    from utils.features import cached_arrays

    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * int(1.2 * 2**20))

    def encode(start, stop):
        return {"x": np.arange(start, stop, dtype=np.float32)[:, None].repeat(1024, 1)}  # 4 KB a row

    with pytest.raises(DiskFull, match="the disk is full"):
        cached_arrays(small_disk / "entry", 256, encode, {}, "test", chunk_rows=64)
    filler.unlink()
    arrays = cached_arrays(small_disk / "entry", 256, encode, {}, "test", chunk_rows=64)
    assert np.array_equal(arrays["x"].numpy()[:, 0], np.arange(256, dtype=np.float32))


def test_a_gpu_run_refuses_a_notebook_whose_disk_need_exceeds_the_free_space(tmp_path):
    """The plan's disk arithmetic before each notebook: 06 of the full profile on Kaggle's 20 GB is checked against
    the folder's free space and refused naming the folder, the need, the free space and --output-dir."""
    from utils import plan
    from utils.config import build, resolve

    (tmp_path / "data").mkdir()
    cfg = resolve(build("full", {"data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "out"),
                                 "platform": "kaggle-2xt4", "device": "cpu"}))
    short = plan.disk_shortfalls(cfg, "06", free_gb=lambda folder: 1.0)
    assert short and f"{tmp_path / 'out' / cfg.run_name}: notebook 06 writes about" in short[0]
    assert "1.0 GB free" in short[0] and "--output-dir" in short[0]
    assert plan.disk_shortfalls(cfg, "06", free_gb=lambda folder: 10_000.0) == []


def test_a_run_on_a_disk_too_small_stops_before_the_notebook_naming_the_folder_and_the_need(small_disk, tiny_data):
    """./run_all.sh on the tiny profile with its outputs on a 2 MB disk: 04 (which writes about 0.1 GB of
    checkpoints) is refused before it trains, with exit status 4 and one line naming the folder, what the notebook
    writes there and the free space; nothing of the run is half-written."""
    from utils import paths

    done = subprocess.run([str(paths.REPO_ROOT / "run_all.sh"), "--profile", "tiny", "--data-dir", str(tiny_data),
                           "--output-dir", str(small_disk), "04"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 4, done.stderr[-2000:]
    said = done.stderr.strip().splitlines()[-1]
    assert f"{small_disk}/tiny-" in said and "notebook 04 writes about" in said and "MB there" in said and "free;" in said, said
    assert "--output-dir" in said and "Traceback" not in done.stderr
    assert not list(small_disk.rglob("*.partial")) and not list(small_disk.rglob("*.tmp"))


def test_what_earlier_notebooks_wrote_does_not_count_as_room_for_the_next(tmp_path):
    """06's need is reduced only by what 06 itself already wrote (a rerun resumes), not by 04's checkpoints."""
    import os

    from utils import plan
    from utils.config import build, resolve

    (tmp_path / "data").mkdir()
    cfg = resolve(build("full", {"data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "out"),
                                 "platform": "kaggle-2xt4", "device": "cpu"}))
    run_dir = tmp_path / "out" / cfg.run_name
    for sub, gb in (("text_finetuned", 500), ("kfold/text_finetuned/seed0", 0)):
        (run_dir / "checkpoints" / sub).mkdir(parents=True, exist_ok=True)
        with open(run_dir / "checkpoints" / sub / "best.pt", "wb") as fh:
            os.truncate(fh.fileno(), gb * 2**30)  # sparse: its size without the disk
    assert plan.disk_shortfalls(cfg, "06", free_gb=lambda folder: 1.0)  # 04's 500 GB are not 06's
    with open(run_dir / "checkpoints" / "kfold/text_finetuned/seed0/best.pt", "wb") as fh:
        os.truncate(fh.fileno(), 500 * 2**30)
    assert plan.disk_shortfalls(cfg, "06", free_gb=lambda folder: 1.0) == []  # 06's own: a rerun resumes


def test_the_plan_behind_the_disk_check_is_made_once_per_configuration(tmp_path, monkeypatch):
    """Each notebook's check reads the run's disk_plan.json; a changed configuration plans again."""
    from utils import plan
    from utils.config import build, resolve

    cfg = resolve(build("tiny", {"output_dir": str(tmp_path)}))
    first = plan.notebook_disk_needs(cfg)
    assert first["04"]["run"] > 0 and (tmp_path / cfg.run_name / "disk_plan.json").exists()
    monkeypatch.setattr(plan.disk, "make_plan", lambda *a, **k: pytest.fail("planned again"))  # where the check looks it up
    assert plan.notebook_disk_needs(cfg) == first
    monkeypatch.undo()
    assert plan.notebook_disk_needs(resolve(build("tiny", {"output_dir": str(tmp_path), "n_folds": 2}))) != first
