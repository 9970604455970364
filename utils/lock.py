"""One run at a time per run folder: a second start is refused at once, naming who holds it.

The lock is the kernel's `flock` on <run>/.lock, held by the process that runs the notebooks (run_all.sh, or the
Jupyter kernel of a notebook opened on the run): it is released when that process ends, however it ends, so a
killed run leaves no lock behind, only its note (<run>/.lock.json: pid, host, since), which the next start
reports as taken over. run_all.sh takes it once for the whole chain and tells its notebooks (PIPELINE_RUN_LOCK).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

HELD: dict[str, int] = {}  # run folders this process holds: their lock file descriptors


class RunInUse(RuntimeError):
    """Another process is running this run folder."""


def _note(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / ".lock.json").read_text())
    except (OSError, ValueError):
        return {}


def acquire(run_dir, pid: int | None = None) -> None:
    """Hold `run_dir` for this process (or note `pid` as the holder: run_all.sh's shell); raise RunInUse naming the
    holder if another process holds it. Holding it already, or inside a chain whose runner holds it, is fine."""
    run_dir = Path(run_dir).resolve()
    chain = os.environ.get("PIPELINE_RUN_LOCK")
    if str(run_dir) in HELD or (chain and Path(chain).resolve() == run_dir):
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        note = _note(run_dir)
        raise RunInUse(f"{run_dir} is in use by process {note.get('pid', '?')} on {note.get('host', '?')} since "
                       f"{note.get('since', '?')}: wait for it to finish, stop it (kill {note.get('pid', 'PID')}), or "
                       f"start this one under another --run-name") from None
    old = _note(run_dir)
    if old:
        print(f"taking over {run_dir}: its last run (process {old.get('pid')} since {old.get('since')}) ended without "
              f"finishing; finished work is kept and the rest resumes", file=sys.stderr)
    (run_dir / ".lock.json").write_text(json.dumps({"pid": pid or os.getpid(), "host": socket.gethostname(),
                                                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    HELD[str(run_dir)] = fd


def release(run_dir) -> None:
    """Done: the note goes, then the lock."""
    run_dir = Path(run_dir).resolve()
    fd = HELD.pop(str(run_dir), None)
    if fd is not None:
        (run_dir / ".lock.json").unlink(missing_ok=True)
        os.close(fd)


def main(argv=None) -> int:
    """`python -m utils.lock RUN_DIR PID`: hold RUN_DIR for process PID (run_all.sh) until PID ends; prints
    'held' once held, or the refusal (exit 2)."""
    args = argv if argv is not None else sys.argv[1:]
    run_dir, pid = Path(args[0]), int(args[1])
    try:
        acquire(run_dir, pid)
    except RunInUse as exc:
        print(f"run_all.sh: {exc}", file=sys.stderr)
        return 2
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run_all.sh ending: release below
    print("held", flush=True)
    try:
        while _alive(pid):
            time.sleep(0.5)
    finally:
        release(run_dir)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


if __name__ == "__main__":
    sys.exit(main())
