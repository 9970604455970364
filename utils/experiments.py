"""Train, score and record one model on the fixed split: the step notebooks 03–06 repeat."""
from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from .baselines import full_proba, tfidf_logreg
from .text import prime_content_morphemes
from .metrics import evaluate, lift_probs, record
from .models import build_model
from .training import TrainConfig, data_labels, fit, predict

LEVELS = ("cat1", "cat2", "cat3")


def train_config(kind: str, cfg: dict, seed: int, **overrides) -> TrainConfig:
    """The profile's training settings for a model kind (fine-tunes use a small learning rate)."""
    finetune = kind.endswith("finetuned")
    epochs = cfg["finetune_epochs"] if finetune else cfg["fusion_epochs"] if kind == "fusion_transformer" else cfg["epochs"]
    base = TrainConfig(epochs=epochs, batch_size=cfg["batch_size"], lr=cfg["lr"] / 10 if finetune else cfg["lr"],
                       encoder_lr=cfg["finetune_lr"] if finetune else None, warmup_ratio=0.0 if finetune else 0.1,
                       patience=2 if finetune else 5, seed=seed, device=cfg["device"],
                       extra={"kind": kind, "profile": cfg["profile"]})
    return replace(base, **overrides)


def kfold_overrides(kind: str, cfg: dict) -> dict:
    """Training settings of K-fold members (02's experts, 06's ensemble): the profile's shorter schedules."""
    if kind == "fusion_transformer":
        return {"epochs": cfg["kfold_fusion_epochs"]}
    if kind == "text_tfidf" or kind.endswith("finetuned"):
        return {}
    return {"epochs": cfg["kfold_epochs"]}


def labels_of(data, indices) -> dict[str, np.ndarray]:
    return {level: data_labels(data, indices, level) for level in LEVELS}


def train_and_score(kind: str, data, train_idx, val_idx, ds, cfg: dict, run_dir, name: str, seed: int = 0,
                    output_dir=None, section: str = "models", record_result: bool = True, init_from=None,
                    **overrides):
    """Fit (or reload) model `kind`, score it on `val_idx` and record it in metrics.json.

    `init_from`: a best.pt to start from (a fine-tune starts from its frozen model's trained head).
    Returns (result dict, validation probabilities, FitResult)."""
    import torch

    tc = train_config(kind, cfg, seed, **overrides)
    model = build_model(kind, cfg, ds.taxonomy.sizes, seed)
    if init_from is not None:
        model.load_state_dict(torch.load(init_from, map_location="cpu"), strict=False)
        tc.extra = {**tc.extra, "init_from": str(init_from)}
    fitted = fit(model, data, train_idx, val_idx, tc, run_dir / name, name)
    probs = predict(fitted.model, data, val_idx, device=cfg["device"])
    result = {**evaluate(probs, labels_of(data, val_idx), ds.taxonomy), "train_seconds": round(fitted.seconds, 1),
              "best_epoch": fitted.best_epoch + 1, "history": fitted.history}
    if record_result:
        record(name, result, {"kind": kind, **{k: v for k, v in asdict(tc).items() if k != "extra"},
                              "text_model": cfg["text_model"], "image_model": cfg["image_model"]},
               output_dir, section)
    return result, probs, fitted


def tfidf_train_and_score(texts, labels3: np.ndarray, train_idx, val_idx, ds, name: str, seed: int = 0,
                          output_dir=None, section: str = "models", record_result: bool = True):
    """TF-IDF + logistic regression on cat3; cat1/cat2 probabilities summed from cat3."""
    started = time.time()
    prime_content_morphemes(texts)
    model = tfidf_logreg(seed=seed).fit([texts[i] for i in train_idx], labels3[train_idx])
    p3 = full_proba(model, [texts[i] for i in val_idx], len(ds.taxonomy.cat3))
    probs = lift_probs(p3, ds.taxonomy)
    y3 = labels3[val_idx]
    y = {"cat3": y3, "cat2": ds.taxonomy.parent_of("cat3")[y3]}
    y["cat1"] = ds.taxonomy.parent_of("cat2")[y["cat2"]]
    result = {**evaluate(probs, y, ds.taxonomy), "train_seconds": round(time.time() - started, 1)}
    if record_result:
        record(name, result, {"kind": "tfidf_logreg", "features": "Kiwi content morphemes + char 2-4-grams",
                                      "classifier": "SGD log-loss, alpha 1e-5"},
               output_dir, section)
    return result, probs, model


def load_trained(kind: str, cfg: dict, ds, runs_dir, name: str | None = None, seed: int = 0):
    """A model of `kind` with the best weights of its run folder (`runs_dir/name`)."""
    import torch
    from pathlib import Path

    best = Path(runs_dir) / (name or kind) / "best.pt"
    if not best.exists():
        raise FileNotFoundError(f"{best}: no trained model; run the notebook that trains {name or kind} first")
    model = build_model(kind, cfg, ds.taxonomy.sizes, seed)
    model.load_state_dict(torch.load(best, map_location="cpu"), strict=False)
    return model.eval()
