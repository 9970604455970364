"""How close the predictor's own loop comes to the bare encoders, and how long a run takes to load.

    python benchmarks/predict_speed.py                       # the most recent run under outputs/, 512 places
    python benchmarks/predict_speed.py --run outputs/demo-generated-seed0 --rows 1024 --device cuda
    python benchmarks/predict_speed.py --bf16-encoders        # the encoders in bf16 (a CPU with native bf16)

On the same rows (a generated catalogue, a photo per row), in one process:
- *bare*: the run's frozen encoders alone (`features.cache_tower` per modality the members read), in the run's
  precision (bf16 with `--bf16-encoders`), over batches tokenized and decoded beforehand: the ceiling of any loop that runs them;
- *loop*: `Predictor.predict` end to end from file names and texts: photos decoded (in loader workers on a GPU),
  text tokenized, every member, the blend, the hierarchical decode, the keyword hashtags;
- what the loop spends outside the encoders: reading the inputs, the keywords (with their Kiwi analysis), the
  members themselves on the encoders' states computed beforehand (`members_s`: the fold units of each neural member,
  the TF-IDF models with their Kiwi analysis); `ceiling` = bare / (bare + members), the most any loop that runs these
  members can reach (a member trained end to end runs its own encoders there, which only lowers the ceiling);
- *load*: a fresh process importing the package, loading the run (`Predictor(run)`) and Kiwi's model (on first
  use, where a TF-IDF member or the keywords read morphemes), timed apart; their sum is `ready_s`, the time before
  the first row; beside it `libraries_s`, a fresh process importing only the libraries those steps need.
Prints the figures and writes them to benchmarks/results/predict-speed-<device>.csv.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
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
# What any predictor of these members imports before reading a file: torch, torch._dynamo (transformers imports it
# to load a model, timm through torchvision), timm, transformers' model class, scikit-learn's TF-IDF pipeline,
# pandas, Kiwi's module. The floor under LOAD's import and Predictor(run) on this machine.
LIBRARIES = """
import json, time
start = time.perf_counter()
import torch, torch._dynamo, timm, pandas, kiwipiepy
from transformers import XLMRobertaModel
import sklearn.feature_extraction.text, sklearn.linear_model, sklearn.pipeline
print(json.dumps({"libraries_s": time.perf_counter() - start}))
"""


def loading(run: Path, device: str, repeats: int) -> dict:
    """The fastest of `repeats` fresh processes (the first also fills the file system's cache), for the run and
    for the libraries alone, taken in turns."""
    best = {}
    for _ in range(repeats):
        for script, args in ((LOAD, [str(run), device]), (LIBRARIES, [])):
            out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                                 check=True)
            took = json.loads(out.stdout.strip().splitlines()[-1])
            if script not in best or sum(took.values()) < sum(best[script].values()):
                best[script] = took
    return {name: value for took in best.values() for name, value in took.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run folder (default: the most recent under outputs/)")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each; the fastest counts")
    parser.add_argument("--out", default=None, help="CSV (default: benchmarks/results/predict-speed-<device>.csv, "
                                                    "-bf16.csv with --bf16-encoders)")
    parser.add_argument("--bf16-encoders", action="store_true", help="the predictor's --bf16-encoders (both passes)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from utils import kinds, paths
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
    predictor = Predictor(run, args.device, bf16_encoders=args.bf16_encoders)
    cfg, device = predictor.cfg, predictor.device
    towers = {m: cache_tower(m, cfg, device) for m in predictor.reads}
    groups = batches_of(len(texts), args.batch_size)

    def read_places(pin=None):
        return list(Places(cfg, texts, photos, predictor.reads).loader(groups, device, pin=pin))

    def read_inputs():
        return [to_device(b, device) for b in read_places()]

    def timed(step) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    read = read_places(pin=False)  # on the host, as the loop reads them
    batches = [to_device(batch, device) for batch in read]
    inputs = [predictor._inputs(batch) for batch in read]
    chunk_texts = [[texts[i] for i in group] for group in groups]
    tfidf = any(not kinds.get(kind).neural for kind, _, _ in predictor.members)

    def members():  # with the texts' Kiwi analysis where a TF-IDF member reads it (then forgotten, as in the loop)
        with analysed(texts) if tfidf else nullcontext():
            for kind, _, units in predictor.members:
                predictor._member_block(kind, units, inputs, chunk_texts)

    def bare():
        with torch.inference_mode(), autocast(device, predictor.encoder_precision):
            for batch in batches:
                encoder_states(towers, batch)

    def keywords():
        with analysed(texts):
            predictor.keywords.keywords(texts, 3)

    predictor.predict(photos[:args.batch_size], texts[:args.batch_size], check=False, progress=False)  # warm up
    steps = {"bare": bare, "loop": lambda: predictor.predict(photos, texts, check=False, progress=False),
             "inputs": read_inputs, "keywords": keywords if predictor.keywords else lambda: None, "members": members}
    times = {name: [] for name in steps}
    for _ in range(args.repeats):  # interleaved, so that a slow spell of a shared machine hits each alike
        for name, step in steps.items():
            times[name].append(timed(step))
    bare_s, loop_s, inputs_s, keywords_s, members_s = (min(times[name]) for name in steps)
    rows = len(texts)
    capability = torch.backends.cpu.get_cpu_capability()
    result = {"machine": f"{platform.machine()} {capability} {torch.get_num_threads()} threads", "device": device,
              "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else "",
              "run": run.name, "members": "+".join(k for k, _, _ in predictor.members), "precision": predictor.encoder_precision,
              "rows": rows, "batch_size": args.batch_size, "bare_rows_s": round(rows / bare_s, 1),
              "loop_rows_s": round(rows / loop_s, 1), "loop_vs_bare": round(bare_s / loop_s, 3),
              "ceiling": round(bare_s / (bare_s + members_s), 3), "members_s": round(members_s, 2),
              "inputs_s": round(inputs_s, 2), "keywords_s": round(keywords_s, 2), "bare_s": round(bare_s, 2),
              "loop_s": round(loop_s, 2), "import_s": round(load["import_s"], 2), "load_s": round(load["load_s"], 2),
              "kiwi_s": round(load["kiwi_s"], 2), "libraries_s": round(load["libraries_s"], 2),
              "ready_s": round(load["import_s"] + load["load_s"] + load["kiwi_s"], 2),
              "torch": torch.__version__}
    for key, value in result.items():
        print(f"{key:>14}: {value}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"predict-speed-{device.split(':')[0]}{'-bf16' if args.bf16_encoders else ''}.csv"
    write_csv(pd.DataFrame([result]), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
