"""Peak memory of the data path and of one training epoch, per training mode and dataset size.

    python benchmarks/scale.py                                   # default and full size x both modes
    python benchmarks/scale.py --sizes full --modes cached --steps 20

Each (size, mode) runs in its own process on the demo encoders (e5-small, Lite0) and the bundled GENERATED
dataset of that size (`full`: the contest's 16,986 / 7,280 rows). Phases, each measured on its own:
`cache` (cached mode: the encoders' pass over all rows, skipped when the cache is already filled), `data path`
(every training row drawn once, as training draws them) and `epoch` (one training epoch of `--kind`, capped at
`--steps` optimiser steps, then validation on `--val-rows` rows). Two peaks per phase: anonymous memory (the heap,
what running out of RAM is about; sampled every 10 ms from /proc/self/status) and VmHWM, the kernel's high-water
mark, which also counts the pages of the memory-mapped cache that the kernel can drop whenever it needs them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _status(field: str) -> int:
    """A /proc/self/status field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


class PeakMemory:
    """Peak anonymous RSS (sampled) and VmHWM (reset at the start) over a `with` block, in MiB."""

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.anon, self._stop = _status("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.started = time.time()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.anon = max(self.anon, _status("RssAnon"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.anon, self.hwm, self.seconds = max(self.anon, _status("RssAnon")), _status("VmHWM"), time.time() - self.started


def measure(size: str, mode: str, kind: str, steps: int, val_rows: int, cache_dir: str) -> list[dict]:
    """The three phases for one dataset size and training mode, in this process."""
    import numpy as np

    from utils.experiments import model_data
    from utils.models import build_model
    from utils.run import start
    from utils.training import batches, fit

    settings = {"data_size": size, f"{kind}.training_mode": mode, "cache_dir": cache_dir}  # the kind's scope wins
    run = start("demo", "", tempfile.mkdtemp(), 0, "", settings)
    cfg, ds = run.cfg, run.dataset(check_images=False)
    train_idx = np.arange(len(ds.train) - val_rows)
    val_idx = np.arange(len(ds.train) - val_rows, len(ds.train))
    rows, base = [], {"size": size, "rows": len(ds.train) + len(ds.test), "mode": mode, "kind": kind}
    with PeakMemory() as peak:
        data = model_data(ds, cfg, [kind])
    if mode == "cached":
        rows.append({**base, "phase": "cache (encode or load)", "peak_anon_mib": peak.anon, "vm_hwm_mib": peak.hwm,
                     "seconds": round(peak.seconds, 1)})
    with PeakMemory() as peak:
        for _ in batches(data, train_idx, cfg.batch_size, run.device):
            pass
    rows.append({**base, "phase": "data path (every training row once)", "peak_anon_mib": peak.anon,
                 "vm_hwm_mib": peak.hwm, "seconds": round(peak.seconds, 1)})
    model = build_model(kind, cfg, ds.taxonomy.sizes, cfg.seed)
    tc = replace(cfg.schedule(kind), epochs=1, steps_per_epoch=steps)
    with PeakMemory() as peak:
        fit(model, data, train_idx, val_idx, tc, Path(run.dir) / "bench", verbose=False)
    rows.append({**base, "phase": f"one epoch ({steps} steps of {cfg.batch_size}, validation on {val_rows} rows)",
                 "peak_anon_mib": peak.anon, "vm_hwm_mib": peak.hwm, "seconds": round(peak.seconds, 1)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="default,full")
    parser.add_argument("--modes", default="cached,end_to_end")
    parser.add_argument("--kind", default="fusion_transformer")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--val-rows", type=int, default=256)
    parser.add_argument("--cache-dir", default=str(ROOT / "outputs" / "cache"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = measure(args.sizes, args.modes, args.kind, args.steps, args.val_rows, args.cache_dir)
        print("RESULT " + json.dumps(result))
        return 0
    from utils.runtime import machine_description

    print(f"machine: {machine_description()}")
    table = []
    for size in args.sizes.split(","):
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--child", "--sizes", size, "--modes", mode, "--kind", args.kind,
                       "--steps", str(args.steps), "--val-rows", str(args.val_rows), "--cache-dir", args.cache_dir]
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if out.returncode or not lines:
                print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
                return out.returncode or 1
            table += json.loads(lines[-1][len("RESULT "):])
            _print(table)  # after each child, so that a long run shows what it has measured so far
    return 0


def _print(table: list[dict]) -> None:
    print("| size (rows) | mode | phase | peak anonymous MiB | VmHWM MiB | seconds |")
    print("|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['size']} ({r['rows']:,}) | {r['mode']} | {r['phase']} | {r['peak_anon_mib']:,} | "
              f"{r['vm_hwm_mib']:,} | {r['seconds']} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
