"""What a user would pick instead, on the same rows: the pipeline's demo beside AutoGluon's MultiModalPredictor
with the same two encoders and a plain character n-gram baseline, on a data folder in the contest layout whose
`truth/test_labels.csv` scores the test rows.

    python3 -m venv .venv-peer && .venv-peer/bin/pip install -r benchmarks/peer-requirements.txt   # once
    .venv/bin/python benchmarks/peer.py --data-dir data/generated [--time-limit 1200] [--systems char,autogluon]

Offline throughout. AutoGluon runs in its own environment (it pins an older torch) with AutoGluon's defaults but
the encoders (multilingual-e5-small as a local Hugging Face folder; EfficientNet-Lite0's ImageNet weights in the
hub cache that timm's `pretrained=True` reads, checked tensor for tensor), `f1_weighted` and the stated time limit.
The pipeline runs `./run_all.sh --data-dir` from an empty output and cache folder (all seven notebooks). Each
system's row is kept in WORK/<data folder>/<system>.json, so a rerun does only what is missing (delete a file to
measure again); a system with no kept file and not named by --systems keeps its row of the existing CSV. Writes
benchmarks/results/peer-<data folder>.csv: weighted F1 on cat3 against the hidden test labels, the system's own
validation score, wall time, prediction rows/s (the models loaded; loading apart) and the peak resident memory of
its largest process (GNU time).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SYSTEMS = ("pipeline", "autogluon", "char")
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


def timed(cmd: list, log: Path, env: dict | None = None) -> tuple[float, float]:
    """Runs `cmd` under GNU time with its output to `log`; returns (wall seconds, peak RSS in MB); a failure
    names the command and its log."""
    stats = log.with_suffix(".time")
    with open(log, "w") as out:
        done = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(stats), *map(str, cmd)], stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))} ... exited with {done.returncode}; see {log}")
    wall, peak_kb = stats.read_text().split()[-2:]
    return float(wall), int(peak_kb) / 1024


def last_json(log: Path) -> dict:
    return json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][-1])


def score(data: Path, submission: Path) -> float:
    import pandas as pd

    from utils.metrics import weighted_f1

    truth = pd.read_csv(data / "truth" / "test_labels.csv", dtype=str).set_index("id")
    predicted = pd.read_csv(submission, dtype=str, keep_default_na=False)
    return round(weighted_f1(truth.loc[predicted["id"], "cat3"].to_numpy(), predicted["cat3"].to_numpy()), 4)


def pipeline(data: Path, work: Path, args) -> dict:
    wall, peak = timed([ROOT / "run_all.sh", "--data-dir", data, "--output-dir", work / "outputs",
                        "--cache-dir", work / "cache", "--run-name", "peer"], work / "pipeline.log")
    run = work / "outputs" / "peer"
    speed_log = work / "pipeline-predict.log"
    subprocess.run([sys.executable, __file__, "--predict-speed", str(run), str(data)], check=True,
                   stdout=open(speed_log, "w"), stderr=subprocess.STDOUT)
    metrics = json.loads((run / "metrics.json").read_text())
    oof = {row["model"]: row["OOF weighted F1 cat3"] for row in metrics["ensemble"]["kfold"]["models"]}["ensemble"]
    return {"weighted F1 cat3": score(data, run / "submission.csv"), "own validation": round(oof, 4),
            "validation is": "ensemble out of fold", "wall seconds": round(wall, 1),
            "what the time covers": "set-up check, notebooks 01-07", "peak RSS MB": round(peak),
            **last_json(speed_log)}


def predict_speed(run: Path, data: Path) -> dict:
    """Rows/s of the run's predictor over the test rows, the models loaded (loading timed apart)."""
    from utils.predict import load_predictor, read_places

    started = time.time()
    predictor = load_predictor(run, device="cpu")
    loaded = time.time() - started
    _, images, texts = read_places(data / "test.csv")
    started = time.time()
    predictor.predict(images, texts)
    rate = len(texts) / (time.time() - started)
    return {"predict rows/s": round(rate, 2), "load seconds": round(loaded, 1), "versions": versions()}


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("torch", "timm", "transformers", "scikit-learn"))


def autogluon(data: Path, work: Path, args) -> dict:
    from offline_encoders import export

    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} not found: python3 -m venv .venv-peer && "
                         ".venv-peer/bin/pip install -r benchmarks/peer-requirements.txt")
    encoders = export(work.parent / "encoders", hub_cache=True)
    ag_work = work / "autogluon"
    ag_work.mkdir(parents=True, exist_ok=True)
    (ag_work / encoders["weights"].name).write_bytes(encoders["weights"].read_bytes())
    log = work / "autogluon.log"
    wall, peak = timed([PEER_PYTHON, ROOT / "benchmarks" / "peer_autogluon.py", data, ag_work, encoders["text_dir"],
                        args.time_limit], log,
                       env={"HF_HOME": str(encoders["hf_home"]), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                            "NO_ALBUMENTATIONS_UPDATE": "1"})
    result = last_json(log)
    return {"weighted F1 cat3": score(data, ag_work / "autogluon-submission.csv"),
            "own validation": result.pop("validation_f1"), "validation is": "its held-out split",
            "wall seconds": round(wall, 1), "what the time covers": f"fit (time_limit={args.time_limit} s) and predict",
            "peak RSS MB": round(peak), "predict rows/s": result.pop("predict_rows_per_second"),
            "versions": f"autogluon.multimodal {result['version']}, torch {result['torch']}, timm {result['timm']}",
            "fit seconds": result["fit_seconds"]}


def char_baseline(data: Path, work: Path, args) -> dict:
    log = work / "char.log"
    wall, peak = timed([sys.executable, __file__, "--char-only", str(data), str(work)], log)
    return {**last_json(log), "wall seconds": round(wall, 1), "what the time covers": "read, fit, predict",
            "peak RSS MB": round(peak)}


def char_only(data: Path, work: Path) -> dict:
    """Text only: the reference of benchmarks/tfidf_reference.py fitted on every training row."""
    import pandas as pd

    from tfidf_reference import reference
    from utils.data import read_csv_any

    train, test = read_csv_any(data / "train.csv"), read_csv_any(data / "test.csv")
    model = reference().fit(train["overview"].fillna(""), train["cat3"])
    started = time.time()
    predicted = model.predict(test["overview"].fillna(""))
    rate = len(test) / (time.time() - started)
    pd.DataFrame({"id": test["id"], "cat3": predicted}).to_csv(work / "char-submission.csv", index=False)
    return {"weighted F1 cat3": score(data, work / "char-submission.csv"), "predict rows/s": round(rate, 1),
            "versions": versions()}


def markdown(files: list) -> str:
    """One row per dataset and system: the figures docs/results.md shows."""
    import pandas as pd

    table = pd.concat([pd.read_csv(f) for f in files])
    cells = ["dataset", "system", "weighted F1 cat3", "own validation", "wall seconds", "what the time covers",
             "predict rows/s", "peak RSS MB"]
    lines = ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]
    for row in table.to_dict("records"):
        lines.append("| " + " | ".join("" if pd.isna(row.get(c)) else str(row[c]) for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/peer"))
    parser.add_argument("--time-limit", type=int, default=1200, help="AutoGluon's fit time_limit, seconds")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--table", action="store_true", help="print every results/peer-*.csv as one Markdown table")
    parser.add_argument("--predict-speed", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--char-only", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.predict_speed:
        print(json.dumps(predict_speed(*args.predict_speed)))
        return 0
    if args.char_only:
        print(json.dumps(char_only(*args.char_only)))
        return 0
    import pandas as pd

    from utils.io import write_csv, write_json

    if args.table:
        print(markdown(sorted(args.out_dir.glob("peer-*.csv"))))
        return 0
    data = args.data_dir.resolve()
    if not (data / "truth" / "test_labels.csv").exists():
        raise SystemExit(f"{data}/truth/test_labels.csv not found: the peer benchmark scores against hidden labels")
    work = args.work / data.name
    work.mkdir(parents=True, exist_ok=True)
    runners = {"pipeline": pipeline, "autogluon": autogluon, "char": char_baseline}
    names = {"pipeline": "the pipeline's demo (./run_all.sh --data-dir)",
             "autogluon": "AutoGluon MultiModalPredictor, e5-small + Lite0",
             "char": "char n-grams 1-3 + LogisticRegression(C=10), text only"}
    for system in args.systems.split(","):
        kept = work / f"{system}.json"
        if not kept.exists():
            print(f"{data.name}: {names[system]} ...", flush=True)
            write_json(runners[system](data, work, args), kept)
    out = args.out_dir / f"peer-{data.name}.csv"
    earlier = pd.read_csv(out, dtype=object, keep_default_na=False) if out.exists() else pd.DataFrame()
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    rows = []
    for s in SYSTEMS:
        if (work / f"{s}.json").exists():
            rows.append({"dataset": data.name, "system": names[s], **json.loads((work / f"{s}.json").read_text()),
                         "machine": machine})
        elif not earlier.empty and (earlier["system"] == names[s]).any():
            # measured before on another work folder (AutoGluon's 18 minutes are not redone to rerun the pipeline)
            rows.append(earlier[earlier["system"] == names[s]].iloc[0].replace("", None).dropna().to_dict())
    table = pd.DataFrame(rows)
    table = table[[c for c in table.columns if c != "machine"] + ["machine"]]
    write_csv(table, out)
    print(table.drop(columns=["dataset", "machine"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
