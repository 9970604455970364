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
