"""The most any model can score on the mixed foreign data (`tests/foreign_data.py --style mixed`), beside the
pipeline's run and the plain character baseline: the Bayes-optimal classifier and label checker, which know the
generator's own model, its class weights and each photo's object shape exactly.

* Test weighted F1 on cat3 of the Bayes classifier (argmax of `foreign_data.mixed_posterior`). A row whose text
  happens to draw only its cat2's shared words, and whose photo shows no cat3, is a guess for every model.
* Label checking on the training rows: each row's probability of carrying a corrupted label given its text, photo
  and given label (the noise rate and its sibling rule known). Precision and recall of flagging it above 0.5, and
  the break-even point (precision = recall of the top k rows, k the number of corrupted labels); 02's suspects
  from the run beside them.

    .venv/bin/python benchmarks/foreign_ceiling.py /tmp/peer-data/foreign-mixed=/tmp/peer2/foreign-mixed/outputs/peer \\
        /tmp/peer-data/foreign-textonly=/tmp/peer6/foreign-textonly/outputs/peer

Writes benchmarks/results/foreign-ceiling.csv. The character baseline's row is fitted here (benchmarks/
tfidf_reference.py's reference, as benchmarks/peer.py fits it) so that the file stands alone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import foreign_data  # noqa: E402
import tfidf_reference  # noqa: E402
from utils.io import write_csv  # noqa: E402
from utils.metrics import weighted_f1  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "foreign-ceiling.csv"


def photo_shapes(frame: pd.DataFrame, true_cat3: pd.Series, evidence: pd.DataFrame) -> list[str | None]:
    """Each row's photo as the generator drew it: its cat3's shape where the photo shows the class, the ring
    ("star") where it does not, None without a photo."""
    tree = foreign_data._mixed_tree()
    shows = evidence.set_index("id")["photo_shows_cat3"]
    out = []
    for rid, path, cat3 in zip(frame["id"], frame["img_path"].astype(object).fillna(""), true_cat3):
        if not path:
            out.append(None)
            continue
        if not shows[rid]:
            out.append("star")
            continue
        cat2 = next(t[1] for t in tree if t[2] == cat3)
        out.append(foreign_data.SHAPES[[t[2] for t in tree if t[1] == cat2].index(cat3)])
    return out


def corruption_probability(posterior: dict[str, float], given: str, noise: float) -> float:
    """P(the given label is not the place's class | its text and photo, the given label): a label is kept with
    1 - noise, else moved to one of the other siblings at random."""
    n = len(posterior)
    joint = {k: p * ((1 - noise) if k == given else noise / (n - 1)) for k, p in posterior.items()}
    return 1 - joint[given] / sum(joint.values())


def measure(data: Path, run: Path | None, noise_rate: float | None = None) -> list[dict]:
    """The rows of the CSV for one data folder; `noise_rate` None: the share `truth/label_noise.csv` lists."""
    train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
    truth = pd.read_csv(data / "truth" / "test_labels.csv").set_index("id").loc[test["id"], "cat3"].to_numpy()
    evidence = pd.read_csv(data / "truth" / "evidence.csv")
    noise = pd.read_csv(data / "truth" / "label_noise.csv")
    true_train = train["cat3"].where(~train["id"].isin(noise["id"]),
                                     train["id"].map(noise.set_index("id")["true_cat3"]))
    shapes = photo_shapes(test, truth, evidence)

    def bayes_f1(seen) -> float:
        posteriors = (foreign_data.mixed_posterior(o, s) for o, s in zip(test["overview"], seen))
        return weighted_f1(truth, np.array([max(p, key=p.get) for p in posteriors]))

    reference = tfidf_reference.reference().fit(train["overview"].fillna(""), train["cat3"])  # benchmarks/peer.py's
    rows = [{"dataset": data.name, "system": "Bayes-optimal (the generator's own model)", "measure": "test weighted F1",
             "value": bayes_f1(shapes)},
            {"dataset": data.name, "system": "Bayes-optimal, the text alone", "measure": "test weighted F1",
             "value": bayes_f1([None if s is None else "unseen" for s in shapes])},
            {"dataset": data.name, "system": "char n-grams 1-3 + LogisticRegression(C=10)",
             "measure": "test weighted F1",
             "value": weighted_f1(truth, reference.predict(test["overview"].fillna("")))}]
    if run is not None:
        submission = pd.read_csv(run / "submission.csv").set_index("id").loc[test["id"], "cat3"].to_numpy()
        rows.append({"dataset": data.name, "system": "the pipeline's demo", "measure": "test weighted F1",
                     "value": weighted_f1(truth, submission)})
    if noise.empty:
        return rows
    noise_rate = len(noise) / len(train) if noise_rate is None else noise_rate
    posteriors = [foreign_data.mixed_posterior(o, s)
                  for o, s in zip(train["overview"], photo_shapes(train, true_train, evidence))]
    risk = np.array([corruption_probability(p, g, noise_rate) for p, g in zip(posteriors, train["cat3"])])
    silent = np.array([np.allclose(list(p.values()), list(foreign_data.mixed_prior(c2).values()))
                       for p, c2 in zip(posteriors, train["cat2"])])  # text and photo say nothing beyond the cat2
    corrupted = train["id"].isin(noise["id"]).to_numpy()
    flagged = risk > 0.5
    top = np.argsort(-risk, kind="stable")[:corrupted.sum()]
    bayes = "Bayes-optimal (the generator's own model)"
    rows += [{"dataset": data.name, "system": bayes, "measure": "label suspects precision (> 0.5)",
              "value": corrupted[flagged].sum() / max(flagged.sum(), 1)},
             {"dataset": data.name, "system": bayes, "measure": "label suspects recall (> 0.5)",
              "value": flagged[corrupted].mean()},
             {"dataset": data.name, "system": bayes, "measure": "label suspects break-even (top k)",
              "value": corrupted[top].mean()},
             {"dataset": data.name, "system": bayes,
              "measure": "corrupted labels whose text and photo say no more than the cat2",
              "value": float((silent & corrupted).sum())}]
    if run is not None and (run / "label_suspects.csv").exists():
        suspects = set(pd.read_csv(run / "label_suspects.csv")["id"])
        pipeline = train["id"].isin(suspects).to_numpy()
        rows += [{"dataset": data.name, "system": "the pipeline's demo (02)", "measure": "label suspects precision",
                  "value": corrupted[pipeline].sum() / max(pipeline.sum(), 1)},
                 {"dataset": data.name, "system": "the pipeline's demo (02)", "measure": "label suspects recall",
                  "value": pipeline[corrupted].mean()}]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="DATA[=RUN]: a mixed data folder, optionally with its run folder")
    parser.add_argument("--noise", type=float, default=None,
                        help="the share of corrupted training labels (default: as truth/label_noise.csv lists)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for spec in args.folders:
        data, _, run = spec.partition("=")
        rows += measure(Path(data), Path(run) if run else None, args.noise)
    table = pd.DataFrame(rows).round(4)
    write_csv(table, args.out)
    print(table.to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
