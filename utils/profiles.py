"""Run profiles: `demo` (offline, CPU, bundled data) and `full` (GPU, online weights, real contest settings).

`demo` trades a little accuracy for time where it measured the cost small, so that the whole run fits in about
20 minutes on 2 cores: one fine-tuning epoch (the second only overfit: 0.589 -> 0.584); 25 epochs for K-fold
members and the hybrid ViT; 6 for K-fold fusion models (5 cost 0.034 OOF F1); and the fusion averages its text
tokens in pairs (`fusion_text_pool` 2), which halves its training time for -0.011 validation weighted F1
(6-epoch runs, 0.804 -> 0.793).

A notebook's parameters cell names the profile; `settings()` turns it into explicit values and
any parameter the notebook sets overrides them. `tiny` exists for the tests (random tiny encoders).
"""
from __future__ import annotations

from pathlib import Path

from . import paths

PROFILES = {
    "demo": {
        "data_size": "default", "text_model": "e5-small-offline", "image_model": "efficientnet-lite0-offline",
        "image_size": 128, "max_len": 64, "text_top_layers": 1, "image_top_stages": 1,
        "fusion_width": 128, "fusion_layers": 2, "fusion_text_pool": 2, "batch_size": 64, "epochs": 40, "finetune_epochs": 1,
        "fusion_epochs": 10, "lr": 1e-3, "finetune_lr": 2e-5, "n_folds": 5, "device": "auto",
        "kfold_models": "text_tfidf,image_frozen,fusion_transformer", "kfold_epochs": 25, "kfold_fusion_epochs": 6,
        "vit_epochs": 25,
    },
    "full": {
        "data_size": None, "text_model": "klue/roberta-large", "image_model": "vit_large_patch32_384",
        "image_size": 384, "max_len": 256, "text_top_layers": 4, "image_top_stages": 4,
        "fusion_width": 512, "fusion_layers": 2, "fusion_text_pool": 1, "batch_size": 32, "epochs": 40, "finetune_epochs": 5,
        "fusion_epochs": 20, "lr": 1e-3, "finetune_lr": 2e-5, "n_folds": 5, "device": "auto",
        "kfold_models": "text_tfidf,text_finetuned,image_finetuned,fusion_transformer", "kfold_epochs": 40,
        "kfold_fusion_epochs": 20, "vit_epochs": 40,
    },
    "tiny": {
        "data_size": "tiny", "text_model": "tiny-text", "image_model": "tiny-image",
        "image_size": 64, "max_len": 32, "text_top_layers": 1, "image_top_stages": 1,
        "fusion_width": 32, "fusion_layers": 2, "fusion_text_pool": 2, "batch_size": 32, "epochs": 3, "finetune_epochs": 1,
        "fusion_epochs": 2, "lr": 1e-3, "finetune_lr": 1e-4, "n_folds": 3, "device": "cpu",
        "kfold_models": "text_tfidf,image_frozen,fusion_transformer", "kfold_epochs": 3, "kfold_fusion_epochs": 2, "vit_epochs": 3,
    },
}


def settings(profile: str, **overrides) -> dict:
    """The profile's values with the notebook's non-empty overrides applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    values = dict(PROFILES[profile], profile=profile)
    values.update({k: v for k, v in overrides.items() if v not in (None, "")})
    return values


def bundled_data_dir(size: str) -> Path:
    return paths.BUNDLED_DATA_DIR if size == "default" else paths.DATA_ROOT / f"generated-{size}"


def resolve_data_dir(data_dir: str | None, profile: str, seed: int = 0) -> Path:
    """`data_dir` when given (real data); otherwise the bundled GENERATED dataset, generated on first use.

    The bundled dataset is one fixed thing (generator seed 0 unless asked): the run's SEED changes
    training, not the data, so reviewed label fixes keep matching it."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    size = PROFILES[profile]["data_size"]
    if size is None:
        raise ValueError(f"profile {profile!r} runs on the real data: pass DATA_DIR (run_all.sh --data-dir PATH)")
    from .generate import ensure_dataset

    return ensure_dataset(bundled_data_dir(size), seed=seed, size=size)
