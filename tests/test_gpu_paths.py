"""Branches that only a GPU machine takes, taken on the CPU: which device each K-fold unit gets, and the full
profile's refusal of a machine without CUDA."""
import os
import time



def _timed_unit(job, data, device):
    """A stand-in K-fold unit: holds its device for `job` seconds and says when, where, in which process and
    with which torch settings."""
    import torch

    start = time.time()
    time.sleep(job)
    return device, start, time.time(), os.getpid(), (torch.are_deterministic_algorithms_enabled(),
                                                      os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_kfold_units_follow_the_worker_so_no_two_share_a_gpu_while_another_idles():
    """Two workers on two (fake) GPUs, units of unequal length: a GPU never runs two units at once and each
    worker keeps its own GPU. (Assigned by the unit's index, the third unit went to GPU 0 while the first still
    ran there, and GPU 1 idled.) Each worker asks torch for deterministic kernels (and fixes cuBLAS's workspace
    for them) as the notebook's process does, or units trained in several processes would differ from one's."""
    from utils.ensemble import _run_parallel

    results = _run_parallel([1.2, 0.1, 0.1, 0.1, 0.1], 2, "cuda", run=_timed_unit, devices=["fake:0", "fake:1"])
    by_device = {}
    wanted = os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # one set already is kept
    for device, start, end, pid, settings in results:
        by_device.setdefault(device, []).append((start, end, pid))
        assert settings == (True, wanted)
    assert set(by_device) == {"fake:0", "fake:1"}
    for device, spans in by_device.items():
        spans.sort()
        assert len({pid for _, _, pid in spans}) == 1, f"{device} served by more than one worker"
        assert all(a_end <= b_start for (_, a_end, _), (b_start, _, _) in zip(spans, spans[1:])), \
            f"two units at once on {device}: {spans}"
    assert max(len(v) for v in by_device.values()) == 4  # the short units all went to the free GPU


def _failing_unit(job, data, device):
    """A stand-in unit: the first fails at once (a GPU out of memory), each other leaves a mark and takes 0.5 s."""
    folder, i, failing = job
    if i == failing:
        raise RuntimeError("CUDA out of memory")
    (folder / f"{i}.ran").touch()
    time.sleep(3.0 if i < failing else 0.5)  # a unit before the failing one still runs when it fails
    return i


def test_a_failed_kfold_unit_stops_the_queue_at_once(tmp_path):
    """One unit's error drops the queued units when it happens (on Kaggle each is an hour), also while a unit
    before it still runs: only those already running or handed to a worker finish."""
    import pytest

    from utils.ensemble import _run_parallel

    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # unit 1 fails while unit 0 still runs
        _run_parallel([(tmp_path, i, 1) for i in range(16)], 2, "cuda", run=_failing_unit, devices=["fake:0", "fake:1"])
    assert len(list(tmp_path.glob("*.ran"))) <= 8  # all 15 when the error waited for the queue


def test_the_full_profile_refuses_a_machine_without_cuda_before_the_first_notebook(tmp_path, monkeypatch, capsys):
    """A torch CUDA build on a driver too old for it (or no GPU) leaves CUDA silently unavailable; `device=auto`
    would then train the full profile on the CPU for days. It stops at once, naming CUDA and the way out."""
    import torch

    from utils import run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["--profile", "full", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    assert run.main(args) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "CUDA is unavailable" in err and "--set device=cpu" in err
    assert not (tmp_path / "out" / f"full-{tmp_path.name}-seed0").exists()
    assert run.main(args + ["--set", "device=cpu"]) == 0  # asked for: allowed
    assert run.main(["--profile", "tiny", "--output-dir", str(tmp_path / "out")]) == 0  # the CPU profiles run


def test_run_all_stops_the_full_profile_before_01_without_cuda(tmp_path):
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([str(repo / "run_all.sh"), "--profile", "full", "--data-dir", str(tmp_path),
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(Path(os.sys.executable))}, timeout=120)
    assert done.returncode == 2 and "CUDA" in done.stderr and "01_eda" not in done.stdout


def test_a_platform_preset_reaches_the_notebooks_and_a_run_that_cannot_fit_is_refused_naming_the_fix(tmp_path, capsys):
    """`--set platform=kaggle-2xt4`: the plan's adaptations and what the preset gives up reach the notebooks in
    the resolved configuration (each said once); a setting the user gave is kept; a GPU run that cannot fit stops before 01."""
    import json

    from utils import run

    (tmp_path / "data").mkdir()
    base = ["--profile", "full", "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
            "--set", "device=cpu"]
    resolved = tmp_path / "resolved.json"
    assert run.main(base + ["--set", "platform=kaggle-2xt4", "--out", str(resolved)]) == 0
    out, err = capsys.readouterr()
    cfg = json.loads(resolved.read_text())  # what run_all.sh records as the run's config.json
    assert cfg["grad_checkpointing"] is True and cfg["kfold_seeds"] == "0" and cfg["processes"] == 1
    assert "plan: gave up: K-fold seeds: one per fold (--set kfold_seeds=0)" in err
    assert run.main(base + ["--set", "platform=kaggle-2xt4", "--set", "kfold_seeds=0,1"]) == 2  # the user's: kept
    err = capsys.readouterr().err
    assert "does not fit" in err and "kaggle-2xt4 has 19.0 GB usable" in err and "kfold_seeds=0" in err
