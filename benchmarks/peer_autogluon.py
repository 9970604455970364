"""AutoGluon's MultiModalPredictor on a data folder in the contest layout, offline, with the demo's encoders.
Runs in its own environment (benchmarks/peer-requirements.txt), started by benchmarks/peer.py; prints one JSON line.

    HF_HOME=W/hf-home HF_HUB_OFFLINE=1 .venv-peer/bin/python benchmarks/peer_autogluon.py DATA W TEXT_DIR SECONDS
"""
import json
import sys
import time
from pathlib import Path

import pandas as pd


def frame(data: Path, name: str) -> pd.DataFrame:
    """The rows as AutoGluon reads them: the overview as text, the photo as an absolute path (None without one)."""
    rows = pd.read_csv(data / f"{name}.csv", dtype=str, keep_default_na=False)
    rows["img_path"] = [str((data / p).resolve()) if p.strip() else None for p in rows["img_path"]]
    keep = ["overview", "img_path"] + (["cat3"] if "cat3" in rows else [])
    return rows[keep]


def main(data: Path, work: Path, text_dir: str, seconds: int) -> dict:
    import timm
    import torch
    from autogluon.multimodal import MultiModalPredictor
    from autogluon.multimodal import __version__ as ag_version
    from safetensors.torch import load_file

    weights = load_file(str(work / "tf_efficientnet_lite0.safetensors"))
    loaded = timm.create_model("tf_efficientnet_lite0", pretrained=True).state_dict()
    assert loaded.keys() == weights.keys() and all(torch.equal(loaded[k], weights[k]) for k in weights), \
        "timm's pretrained tf_efficientnet_lite0 is not the demo's Lite0 weights"
    train, test = frame(data, "train"), frame(data, "test")
    predictor = MultiModalPredictor(label="cat3", problem_type="multiclass", eval_metric="f1_weighted",
                                    path=str(work / "autogluon-model"), verbosity=2)
    started = time.time()
    predictor.fit(train, time_limit=seconds, seed=0,
                  hyperparameters={"model.hf_text.checkpoint_name": text_dir,
                                   "model.timm_image.checkpoint_name": "tf_efficientnet_lite0"})
    fit_seconds = time.time() - started
    started = time.time()
    predicted = predictor.predict(test)
    predict_seconds = time.time() - started
    pd.DataFrame({"id": pd.read_csv(data / "test.csv", dtype=str)["id"], "cat3": predicted}).to_csv(
        work / "autogluon-submission.csv", index=False)
    validation = predictor.fit_summary().get("val_f1_weighted")
    return {"validation_f1": None if validation is None else round(float(validation), 4),
            "fit_seconds": round(fit_seconds, 1), "predict_seconds": round(predict_seconds, 1),
            "predict_rows_per_second": round(len(test) / predict_seconds, 2), "version": ag_version,
            "torch": torch.__version__, "timm": timm.__version__, "weights_verified_tensors": len(weights)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
