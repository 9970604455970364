"""The TF-IDF member against a plain reference on the same folds: out-of-fold weighted F1 on cat3 (flat argmax),
06's folds (`n_folds`, seed 0) over the training rows as the pipeline reads them (label fixes applied on the bundled
data). The reference is what a scikit-learn user would try first: character n-grams 1–3 (`char_wb`, sublinear TF)
and LogisticRegression(C=10). The member's classifier is chosen as a run chooses it (on 04's training rows, by
`choose_classifier`); both of its classifiers are scored too. Beside each score, the difference to the reference
paired fold by fold (mean and standard deviation over the folds): how far apart two scores are against how much
they move together from fold to fold.

    python benchmarks/tfidf_reference.py DATA_DIR [DATA_DIR ...]       # writes benchmarks/results/tfidf-reference.csv
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def reference():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from utils.text import clean_overview

    return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True,
                                         preprocessor=clean_overview),
                         LogisticRegression(C=10, max_iter=1000))


def out_of_fold(make, texts, y, folds) -> tuple[float, float, list[float]]:
    """Out-of-fold weighted F1, seconds, and the F1 of each fold (for differences paired by fold)."""
    import numpy as np

    from utils.baselines import fit_quietly
    from utils.metrics import weighted_f1

    predicted = np.empty(len(y), dtype=y.dtype)
    started = time.time()
    for k in np.unique(folds):
        train, val = folds != k, folds == k
        predicted[val] = fit_quietly(make(train), texts[train], y[train]).predict(texts[val])
    per_fold = [weighted_f1(y[folds == k], predicted[folds == k]) for k in np.unique(folds)]
    return weighted_f1(y, predicted), time.time() - started, per_fold


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dirs", nargs="+")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tfidf-reference.csv"))
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from utils.baselines import CLASSIFIERS, choose_classifier, tfidf_model
    from utils.io import write_csv
    from utils.run import start
    from utils.splits import kfold
    from utils.text import prime_content_morphemes

    rows = []
    for data_dir in args.data_dirs:
        run = start("demo", data_dir, "/tmp/tfidf-reference", 0, "tfidf-reference", {})
        ds = run.dataset()
        texts, y = ds.train["overview"].to_numpy(), ds.labels("cat3")
        folds = kfold(y, run.cfg.n_folds, run.cfg.seed)
        prime_content_morphemes(list(texts))
        train_idx, _ = run.validation_split(ds)
        chosen, _ = choose_classifier(list(texts[train_idx]), y[train_idx], run.cfg.tfidf_alpha, run.cfg.seed)
        candidates = {"reference: char 1-3 + LogisticRegression(C=10)": reference}
        candidates.update({f"TF-IDF member, {c}{' (chosen)' if c == chosen else ''}":
                           (lambda c=c: tfidf_model(c, run.cfg.tfidf_alpha, run.cfg.seed)) for c in CLASSIFIERS})
        reference_folds = None
        for name, make in candidates.items():
            f1, seconds, per_fold = out_of_fold(lambda train: make(), texts, y, folds)
            if reference_folds is None:  # the first candidate is the reference
                reference_folds = per_fold
            diff = np.subtract(per_fold, reference_folds)
            rows.append({"dataset": Path(ds.data_dir).name, "model": name, "OOF weighted F1 cat3": round(f1, 4),
                         "seconds": round(seconds, 1), "fold F1 std": round(float(np.std(per_fold)), 4),
                         "minus reference, mean of folds": round(float(diff.mean()), 4),
                         "minus reference, std of folds": round(float(diff.std(ddof=1)), 4)})
            print(rows[-1], flush=True)
    write_csv(pd.DataFrame(rows), args.out)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
