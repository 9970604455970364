"""The TF-IDF member's two candidates fitted at the real data's size: seconds and peak memory of one fit.

The contest's training rows (13,588 after 06's validation fold of 16,986), 128 classes, texts of about 700
characters: random words of 2-3 syllables drawn from 2,000 Hangul syllables (their 1-3-grams reach the character
view's 100,000-feature cap, as real Korean text does), 40 words of each text from its class's 200 and 160 from a
30,000-word vocabulary. Words split on spaces stand in for Kiwi's morphemes (whose analysis of random syllables
would be meaningless), so the figures are the classifiers' and vectorizers' cost, not Kiwi's. Each candidate runs
in a fresh process, so that its peak resident memory is its own. The views' cost is set mostly by the features
times the classes (L-BFGS keeps ten pairs of vectors of that size), less by the rows.

    python benchmarks/tfidf_scale.py        # writes benchmarks/results/tfidf-scale.csv
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def texts_and_labels(rows: int, classes: int = 128, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = [chr(0xAC00 + i) for i in rng.choice(11172, 2000, replace=False)]
    vocabulary = ["".join(rng.choice(syllables, rng.integers(2, 4))) for _ in range(30_000)]
    own = {c: rng.choice(len(vocabulary), 200, replace=False) for c in range(classes)}
    y = rng.integers(0, classes, rows)
    texts = [" ".join(vocabulary[i] for i in np.concatenate([rng.choice(own[c], 40), rng.choice(30_000, 160)]))
             for c in y]
    return texts, y


def fit_one(classifier: str, rows: int) -> dict:
    from utils import text
    from utils.baselines import fit_quietly, tfidf_model

    texts, y = texts_and_labels(rows)
    text._CONTENT_CACHE.update((t, t.split()) for t in texts)  # the words as the texts' analysis (see above)
    started = time.perf_counter()
    fit_quietly(tfidf_model(classifier, 1e-5), texts, y)
    seconds = time.perf_counter() - started
    return {"classifier": classifier, "rows": rows, "mean characters": round(sum(map(len, texts)) / len(texts)),
            "fit seconds": round(seconds, 1), "seconds per 1,000 rows": round(seconds / rows * 1000, 2),
            "peak RSS GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=13_588)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the fresh process of one candidate
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tfidf-scale.csv"))
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(fit_one(args.one, args.rows)))
        return 0

    import pandas as pd

    from utils.baselines import CLASSIFIERS
    from utils.io import write_csv

    rows = []
    for classifier in CLASSIFIERS:
        out = subprocess.run([sys.executable, __file__, "--one", classifier, "--rows", str(args.rows)], check=True,
                             capture_output=True, text=True).stdout
        rows.append({**json.loads(out.strip().splitlines()[-1]), "machine": f"{platform.machine()}, {os.cpu_count()} cores"})
        print(rows[-1], flush=True)
    write_csv(pd.DataFrame(rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
