"""03's study: one model trained with each imbalance option and on each kind of augmented copies, on the fixed
validation split, so that the table says what each does. The copies are encoded by the same frozen encoders as
the originals and appended to the cached training rows; the imbalance options are schedule fields, so a later
stage can take what this measured (`kfold.sampling=over`), and so can the copies (`member_copies`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import augment
from . import kinds as registry
from .experiments import train_and_score
from .features import dataset_fingerprint, encode_images, encode_texts, feature_data, model_inputs
from .images import load_image
from .io import atomic_path
from .splits import stratified_sample
from .taxonomy import LEVELS

OPTIONS = {"none": {}, "class-weighted loss": {"class_weight": "balanced"}, "random over-sampling": {"sampling": "over"},
           "random under-sampling": {"sampling": "under"}, "mixup (alpha 0.4)": {"mixup": 0.4}}
COPIES = {"text EDA copies": ("text",), "image augmentation copies": ("image",), "text + image copies": ("text", "image")}


def study_rows(train_idx: np.ndarray, ds, cfg) -> np.ndarray:
    """The training rows a study trains on: at most `study_rows`, stratified on cat3 (said when it samples), so
    that the study's cost stays bounded on a larger dataset while the chain that makes the submission trains on
    every row."""
    rows = stratified_sample(train_idx, ds.labels("cat3"), cfg.study_rows, cfg.seed)
    if len(rows) < len(train_idx):
        print(f"this study trains on {len(rows):,} of the {len(train_idx):,} training rows, a sample stratified on "
              f"cat3 (study_rows={cfg.study_rows}; 0: every row); validation stays the run's whole split")
    return rows


def copy_variants(kind: str, data, ds, cfg, copies: pd.DataFrame, pipeline) -> tuple[dict, dict]:
    """The augmented copies as cached inputs of `kind`, per variant (which modality of a copy is augmented; the
    other is its original's), and their labels."""
    keys = registry.get(kind).inputs
    position = {rid: i for i, rid in enumerate(ds.train["id"])}
    src = torch.tensor([position[s] for s in copies["source_id"]])
    labels = {level: torch.from_numpy(ds.labels(level, copies)) for level in LEVELS}
    text_enc = encode_texts(copies["overview"].tolist(), cfg)
    new_text = model_inputs({"text_final": text_enc["final"], "text_mask": text_enc["mask"]}, keys)
    if "image" not in registry.get(kind).reads:
        return {"text EDA copies": new_text}, labels
    labels["image_present"] = data.tensors["image_present"][src]  # a copy has a photo when its original has
    photos = [augment.augment_image(img, pipeline) if img is not None else None
              for img in map(load_image, copies["image_file"])]
    new_image = model_inputs({"image_final": encode_images(photos, cfg)["final"]}, keys)
    old_text, old_image = ({k: data.tensors[k][src] for k in keys if k.startswith(m)} for m in ("text", "image"))
    return dict(zip(COPIES, ({**new_text, **old_image}, {**old_text, **new_image}, {**new_text, **new_image}))), labels


def member_copies(kind: str, ds, cfg, variant: str, data) -> tuple[dict, np.ndarray, str]:
    """What 06's K-fold member `kind` adds to `data` (its cached inputs) when 03 measured `variant` helping:
    augmented copies of every training row, chosen as 03 chooses them (rarer classes more often), the modalities
    of `variant` augmented and encoded by the frozen encoders, the others their original's. Returns the copies'
    tensors (with labels), each copy's original row and a digest of what they are. A K-fold unit trains on the
    copies of its own training rows only, never of its out-of-fold rows (ensemble._train_unit). Kept in the
    cache folder under the digest, so that worker processes and reruns load instead of encoding again."""
    copies = augment.augment_training_rows(ds.train, np.arange(len(ds.train)), [], cfg.seed, cfg.copy_ops)
    inputs = [k for k in data.tensors if k not in LEVELS and not k.endswith("_present")]
    h = hashlib.sha1(json.dumps([variant, inputs, cfg.text_model, cfg.image_model, cfg.image_weights, cfg.image_size,
                                 cfg.max_len, cfg.text_top_layers, cfg.image_top_stages, cfg.seed,
                                 dataset_fingerprint(ds.data_dir, cfg.cache_dir)]).encode())
    for column in ("overview", "image_file", "cat3"):
        h.update("\x1f".join(copies[column].fillna("").astype(str)).encode())
    digest = h.hexdigest()[:12]
    path = Path(cfg.cache_dir) / "copies" / f"{kind}-{digest}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        return saved["tensors"], saved["sources"].numpy(), digest
    position = {rid: i for i, rid in enumerate(ds.train["id"])}
    src = torch.tensor([position[s] for s in copies["source_id"]], dtype=torch.long)
    tensors = {k: data.tensors[k][src] for k in data.tensors if k not in LEVELS}  # the originals' inputs
    for modality in COPIES[variant]:
        wanted = [k for k in inputs if k.startswith(modality)]
        if not wanted:
            continue
        if modality == "text":
            states = encode_texts(copies["overview"].tolist(), cfg)
        else:
            pipeline = augment.image_pipeline(cfg.seed)
            states = encode_images([augment.augment_image(img, pipeline) if img is not None else None
                                    for img in map(load_image, copies["image_file"])], cfg)
        tensors.update(model_inputs({f"{modality}_{name}": value for name, value in states.items()}, wanted))
    tensors.update({level: torch.from_numpy(ds.labels(level, copies)) for level in LEVELS})
    with atomic_path(path) as tmp:
        torch.save({"tensors": tensors, "sources": src}, tmp)
    return tensors, src.numpy(), digest


def augmentation_study(kind: str, ds, cfg, copies: pd.DataFrame, pipeline, train_idx, val_idx,
                       checkpoints) -> pd.DataFrame:
    """Validation scores of `kind` under each imbalance option and each variant of copies, with the change
    against no option."""
    data = feature_data(ds, cfg, registry.get(kind).inputs)
    variants, labels = copy_variants(kind, data, ds, cfg, copies, pipeline)
    rows = []
    for name, option in {**OPTIONS, **{v: {} for v in variants}}.items():
        run_data, run_train = data, train_idx
        if name in variants:
            run_data, extra_idx = data.extended({**variants[name], **labels})
            run_train = np.concatenate([train_idx, extra_idx])
        result, _, _ = train_and_score(kind, run_data, run_train, val_idx, ds, cfg, checkpoints / "augmentation",
                                       name.replace(" ", "_").replace("(", "").replace(")", ""), cfg.seed,
                                       stage="augmentation", **option)
        h = result["hierarchical"]
        rows.append({"option": name, "weighted F1 cat3": h["weighted_f1_cat3"], "macro F1 cat3": h["macro_f1_cat3"],
                     "train rows": len(run_train)})
    table = pd.DataFrame(rows)
    base = table.set_index("option").loc["none"]
    table["Δ weighted F1"] = table["weighted F1 cat3"] - base["weighted F1 cat3"]
    table["Δ macro F1"] = table["macro F1 cat3"] - base["macro F1 cat3"]
    return table
