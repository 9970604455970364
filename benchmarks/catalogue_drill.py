"""Tag a large generated catalogue the ways a user will: whole, killed half-way and run again, in two shards and a
merge; check the files are the same bytes, and that memory does not grow with the rows.

    python benchmarks/catalogue_drill.py                                  # 100,000 rows, the most recent run
    python benchmarks/catalogue_drill.py --rows 100000 --identity-rows 10000 --run outputs/demo-generated-seed0

Each step is the command a user types (`python -m utils.predict --run RUN --csv C --out O ...`) in its own
process; peak RSS is that process's own (wait4). The memory step tags `--small` rows and `--rows` rows of the same
generator; the kill and shard steps tag `--identity-rows` rows (default: all of `--rows`). Writes
benchmarks/results/catalogue-drill.csv.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def tag(run: Path, source: Path, out: Path, *extra, kill_after: int | None = None) -> dict:
    """One `utils.predict` catalogue job: wall time and peak RSS; with `kill_after`, SIGKILL once that many
    chunks are finished."""
    from utils.catalogue import Parts

    cmd = [sys.executable, "-m", "utils.predict", "--run", str(run), "--csv", str(source), "--out", str(out), *extra]
    start = time.perf_counter()
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=None)
    if kill_after is not None:
        parts = Parts(out)
        while not parts.done(kill_after - 1) and job.poll() is None:
            time.sleep(0.2)
        os.kill(job.pid, signal.SIGKILL)
    _, status, usage = os.wait4(job.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if kill_after is None and code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {code}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "exit": code}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run folder (default: the most recent under outputs/)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=5_000, help="rows of the memory step's small catalogue")
    parser.add_argument("--identity-rows", type=int, default=0, help="rows of the kill and shard steps (default: --rows)")
    parser.add_argument("--work", default=str(ROOT / "outputs" / "benchmarks" / "drill"))
    args = parser.parse_args(argv)

    import math

    import pandas as pd

    from utils import paths
    from utils.catalogue import CHUNK_ROWS
    from utils.generate import generate_catalogue
    from utils.io import write_csv
    from utils.predict import latest_run

    run = Path(args.run) if args.run else latest_run(paths.OUTPUTS)
    work = Path(args.work)
    identity = args.identity_rows or args.rows
    sizes = sorted({args.small, args.rows, identity})
    sources = {}
    for rows in sizes:
        folder = work / f"catalogue-{rows}"
        if not (folder / "catalogue.csv").exists():
            generate_catalogue(folder, rows, seed=2, photos=min(rows, 2000), progress=False)
        sources[rows] = folder / "catalogue.csv"
        for old in folder.glob("tags*"):  # every step starts from nothing
            if old.is_dir():
                import shutil

                shutil.rmtree(old)
            else:
                old.unlink()

    results = []

    def record(step: str, rows: int, took: dict, out: Path | None = None, same_as: str = "") -> None:
        whole_job = step == "whole"  # the other steps tag part of the rows, or none
        row = {"step": step, "rows": rows, **took, "rows_s": round(rows / took["seconds"], 1) if whole_job else "",
               "sha256": digest(out) if out and out.exists() else "", "identical_to_whole": ""}
        if same_as:
            row["identical_to_whole"] = row["sha256"] == same_as
        results.append(row)
        print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)

    whole = {}
    for rows in sizes:
        out = sources[rows].with_name("tags.csv")
        record("whole", rows, tag(run, sources[rows], out), out)
        whole[rows] = results[-1]["sha256"]
    chunks = math.ceil(identity / CHUNK_ROWS)
    out = sources[identity].with_name("tags-killed.csv")
    record(f"killed after {chunks // 2} of {chunks} chunks", identity, tag(run, sources[identity], out,
                                                                            kill_after=chunks // 2))
    record("run again after the kill", identity, tag(run, sources[identity], out), out, whole[identity])
    out = sources[identity].with_name("tags-sharded.csv")
    for k in (1, 2):
        record(f"shard {k}/2", identity, tag(run, sources[identity], out, "--shard", f"{k}/2"))
    record("merge", identity, tag(run, sources[identity], out, "--merge"), out, whole[identity])
    small, large = (next(r for r in results if r["step"] == "whole" and r["rows"] == n) for n in (args.small, args.rows))
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    print(f"peak RSS: {small['peak_rss_mb']} MB for {args.small:,} rows, {large['peak_rss_mb']} MB for "
          f"{args.rows:,} rows ({growth:+.1%})")
    frame = pd.DataFrame(results)
    frame.insert(0, "machine", f"{platform.machine()}, {os.cpu_count()} cores")
    frame.insert(1, "run", run.name)
    write_csv(frame, ROOT / "benchmarks" / "results" / "catalogue-drill.csv")
    print(f"wrote {ROOT / 'benchmarks' / 'results' / 'catalogue-drill.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
