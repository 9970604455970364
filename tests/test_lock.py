"""One run at a time per run folder, with real processes: a holder, a refused second start, a killed holder."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils import lock

REPO = Path(__file__).resolve().parent.parent


def _hold(run_dir: Path):
    """A process holding `run_dir` as run_all.sh's watcher does (for a `sleep` standing in for the shell)."""
    shell = subprocess.Popen(["sleep", "60"])
    holder = subprocess.Popen([sys.executable, "-m", "utils.lock", str(run_dir), str(shell.pid)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return shell, holder


def test_a_second_start_is_refused_naming_the_holder_and_a_dead_holders_run_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    shell, holder = _hold(run_dir)
    try:
        with pytest.raises(lock.RunInUse, match=rf"in use by process {shell.pid} .* since .*--run-name"):
            lock.acquire(run_dir)
    finally:
        holder.kill()  # killed hard: the kernel frees the lock, its note stays
        holder.wait()
        shell.kill()
    lock.acquire(run_dir)
    assert "taking over" in capsys.readouterr().err
    lock.release(run_dir)
    assert not (run_dir / ".lock.json").exists()


def test_run_all_refuses_a_run_folder_in_use_before_the_first_notebook(tmp_path):
    out = tmp_path / "out"
    shell, holder = _hold(out / "held")
    try:
        done = subprocess.run([str(REPO / "run_all.sh"), "--profile", "tiny", "--output-dir", str(out),
                               "--run-name", "held", "01"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHON": sys.executable})
    finally:
        holder.terminate()
        holder.wait()
        shell.kill()
    assert done.returncode == 2 and f"in use by process {shell.pid}" in done.stderr
    assert "01_eda" not in done.stdout
    assert not (out / "held" / ".lock.json").exists()  # the watcher ended cleanly: no note left
