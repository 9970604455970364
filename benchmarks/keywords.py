"""How informative the keyword hashtags are, on the bundled data, whose generator knows which words say something.

    python benchmarks/keywords.py                 # the bundled default-size data, 3 keywords per place
    python benchmarks/keywords.py --size second   # the second development dataset (other words, other sentences)

The generator writes each overview from its classes' own words (hand-written dishes, facilities, activities,
and coined class words), a region, a made-up name, and filler (generic praise, opening hours, notes). A keyword
is counted *informative* when it contains one of its own place's class words or its region's words, a *name*
when it is part of the place's name (the opening sentence's name: the words before the first `은(는)` in the
bundled data, between `소재` and the first full stop in the second dataset), *filler* otherwise.
The keyword model is fitted on the train and test overviews (as 06 fits it) and asked for the test rows'.
Prints the share of informative keywords, how many places got none, and examples; writes them as CSV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", help="generated dataset: default (bundled) or second")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--out", default="", help="CSV of every keyword (default: outputs/benchmarks/keywords-SIZE.csv)")
    args = parser.parse_args(argv)

    import pandas as pd

    from utils import paths
    from utils.config import bundled_data_dir
    from utils.data import load_dataset
    from utils.generate import REGIONS, ensure_dataset, style_of, vocabularies
    from utils.io import write_csv
    from utils.keywords import KeywordModel

    data_dir = bundled_data_dir(args.size)
    ensure_dataset(data_dir, seed=0, size=args.size)
    style = style_of(args.size)
    ds = load_dataset(data_dir, progress=False, check_images=False)
    truth = pd.read_csv(ds.truth_dir / "test_labels.csv", dtype=str).set_index("id").loc[ds.test["id"]]
    vocab = vocabularies(ds.taxonomy.table, style)
    regions = {w for r in REGIONS for w in r.split()}
    model = KeywordModel(ds.taxonomy).fit(pd.concat([ds.train["overview"], ds.test["overview"]]).tolist())
    found = model.keywords(ds.test["overview"].tolist(), args.k)
    rows = []
    for (place, text), words, (_, labels) in zip(ds.test[["id", "overview"]].itertuples(index=False), found,
                                                  truth.iterrows()):
        own = set(vocab[f"cat1:{labels.cat1}"] + vocab[f"cat2:{labels.cat2}"] + vocab[f"cat3:{labels.cat3}"]) | regions
        opening = text.split("은(는)")[0] if style.opening.startswith("{place}") else text.split("소재 ", 1)[-1]
        name = opening.split(".")[0].replace(" ", "")
        for w in words:
            informative = any(v in w for v in own if len(v) > 1)
            rows.append({"id": place, "cat3": labels.cat3, "keyword": w, "informative": informative,
                         "name": not informative and w in name})
        if not words:
            rows.append({"id": place, "cat3": labels.cat3, "keyword": "", "informative": False, "name": False})
    table = pd.DataFrame(rows)
    given = table[table["keyword"] != ""]
    print(f"{len(ds.test)} test places, {len(given)} keyword hashtags ({len(given) / len(ds.test):.2f} per place), "
          f"{(table['keyword'] == '').sum()} places without one")
    filler = ~given["informative"] & ~given["name"]
    print(f"informative (own class words or region): {given['informative'].mean():.3f}; the place's name: "
          f"{given['name'].mean():.3f}; filler: {filler.mean():.3f} of the keyword hashtags")
    print("most frequent filler keywords:", ", ".join(given.loc[filler, "keyword"].value_counts().head(10).index))
    examples = ds.test.head(args.examples)
    for (place, text), words in zip(examples[["id", "overview"]].itertuples(index=False), found):
        print(f"{place} [{truth.loc[place, 'cat3']}]: {' '.join('#' + w for w in words)}   <- {text[:70]}...")
    write_csv(table, Path(args.out or ROOT / "outputs" / "benchmarks" / f"keywords-{args.size}.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
