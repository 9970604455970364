"""How close the predictor's own loop comes to the bare encoders, and how long a run takes to load.

    python benchmarks/predict_speed.py                       # the most recent run under outputs/, 512 places
    python benchmarks/predict_speed.py --run outputs/demo-generated-seed0 --rows 1024 --device cuda

On the same rows (a generated catalogue, a photo per row), in one process:
- *bare*: the run's frozen encoders alone (`features.cache_tower` per modality the members read), in the run's
  precision, over batches tokenized and decoded beforehand: the ceiling of any loop that runs them;
- *loop*: `Predictor.predict` end to end from file names and texts: photos decoded (in loader workers on a GPU),
  text tokenized, every member, the blend, the hierarchical decode, the keyword hashtags;
- what the loop spends outside the encoders: reading the inputs, the keywords (with their Kiwi analysis);
- *load*: a fresh process importing the package, loading the run (`Predictor(run)`) and Kiwi's model (on first
  use, where a TF-IDF member or the keywords read morphemes), timed apart.
Prints the figures and writes them to benchmarks/results/predict-speed-<device>.csv.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD = """
import json, sys, time
start = time.perf_counter()
from utils.predict import Predictor
imported = time.perf_counter()
Predictor(sys.argv[1], sys.argv[2])
loaded = time.perf_counter()
from utils.text import kiwi
kiwi().tokenize("서울")  # Kiwi loads its model on first use
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "kiwi_s": time.perf_counter() - loaded}))
"""


def loading(run: Path, device: str, repeats: int) -> dict:
    """The fastest of `repeats` fresh processes (the first also fills the file system's cache)."""
    best = None
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", LOAD, str(run), device], cwd=ROOT, capture_output=True,
                             text=True, check=True)
        took = json.loads(out.stdout.strip().splitlines()[-1])
        best = took if best is None or took["load_s"] < best["load_s"] else best
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run folder (default: the most recent under outputs/)")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each; the fastest counts")
    parser.add_argument("--out", default=None, help="CSV (default: benchmarks/results/predict-speed-<device>.csv)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from utils import paths
    from utils.features import cache_tower, encoder_states
    from utils.generate import generate_catalogue
    from utils.inputs import Places, batches_of, to_device
    from utils.io import write_csv
    from utils.predict import Predictor, latest_run
    from utils.runtime import autocast
    from utils.text import analysed

    run = Path(args.run) if args.run else latest_run(paths.OUTPUTS)
    data = ROOT / "outputs" / "benchmarks" / f"catalogue-{args.rows}"
    if not (data / "catalogue.csv").exists():
        generate_catalogue(data, args.rows, seed=1, photos=args.rows, progress=False)
    places = pd.read_csv(data / "catalogue.csv", dtype=str, keep_default_na=False)
    photos, texts = [str(data / p) for p in places["img_path"]], list(places["overview"])

    load = loading(run, args.device, args.repeats)
    predictor = Predictor(run, args.device)
    cfg, device = predictor.cfg, predictor.device
    towers = {m: cache_tower(m, cfg, device) for m in predictor.reads}
    groups = batches_of(len(texts), args.batch_size)

    def read_inputs():
        return [to_device(b, device) for b in Places(cfg, texts, photos, predictor.reads).loader(groups, device)]

    def timed(step) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    batches = read_inputs()

    def bare():
        with torch.inference_mode(), autocast(device, predictor.precision):
            for batch in batches:
                encoder_states(towers, batch)

    def keywords():
        with analysed(texts):
            predictor.keywords.keywords(texts, 3)

    predictor.predict(photos[:args.batch_size], texts[:args.batch_size], check=False, progress=False)  # warm up
    steps = {"bare": bare, "loop": lambda: predictor.predict(photos, texts, check=False, progress=False),
             "inputs": read_inputs, "keywords": keywords if predictor.keywords else lambda: None}
    times = {name: [] for name in steps}
    for _ in range(args.repeats):  # interleaved, so that a slow spell of a shared machine hits each alike
        for name, step in steps.items():
            times[name].append(timed(step))
    bare_s, loop_s, inputs_s, keywords_s = (min(times[name]) for name in steps)
    rows = len(texts)
    result = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads", "device": device,
              "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else "",
              "run": run.name, "members": "+".join(k for k, _, _ in predictor.members), "precision": predictor.precision,
              "rows": rows, "batch_size": args.batch_size, "bare_rows_s": round(rows / bare_s, 1),
              "loop_rows_s": round(rows / loop_s, 1), "loop_vs_bare": round(bare_s / loop_s, 3),
              "inputs_s": round(inputs_s, 2), "keywords_s": round(keywords_s, 2), "bare_s": round(bare_s, 2),
              "loop_s": round(loop_s, 2), "import_s": round(load["import_s"], 2), "load_s": round(load["load_s"], 2),
              "kiwi_s": round(load["kiwi_s"], 2),
              "torch": torch.__version__}
    for key, value in result.items():
        print(f"{key:>14}: {value}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"predict-speed-{device.split(':')[0]}.csv"
    write_csv(pd.DataFrame([result]), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
