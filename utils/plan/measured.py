"""The per-item figures a plan uses, and where each comes from: stored traces (figures.json, written by
`--measure`), traced in this process for any other shape, or measured on a GPU by benchmarks/gpu_check.sh (its
CSVs under benchmarks/results/ replace the traced bytes per item, and on the same GPU model the rates).

Why stored: tracing the full profile's shapes takes about a minute; a plan is asked for before every run.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import replace
from pathlib import Path

from .. import kinds, paths
from ..io import read_json
from .assumed import HOST_BASE_GB
from .platforms import Platform
from .tracing import Figures, trace
from .weightless import build, random_backbone, reads


def signature(kind: str, cfg, stage: str | None = None) -> str:
    """Everything the per-item figures of `kind` depend on: the key of MEASURED."""
    parts = [kind, reads(kind, cfg, stage)]
    if "text" in kinds.get(kind).reads:
        parts += [f"{cfg.text_model}@{cfg.max_len}", f"top{cfg.text_top_layers}"]
        parts += [f"emb{int(cfg.train_word_embeddings)}"] if parts[1] == "raw" else []
    if kind == "text_finetuned":
        parts.append(f"{cfg.text_head}{cfg.layerwise_depths if cfg.text_head == 'layerwise' else ''}")
    if "image" in kinds.get(kind).reads:
        parts += [f"{cfg.image_model}@{cfg.image_size}", f"top{cfg.image_top_stages}"]
    if kind == "fusion_transformer":
        parts.append(f"fusion{cfg.fusion_width}x{cfg.fusion_layers}x{cfg.fusion_ff}/{cfg.fusion_text_pool}")
    return "|".join(parts)


FIGURES_FILE = Path(__file__).with_name("figures.json")  # written by `--measure`: every shape the four
# platforms' plans and presets reach for the full profile, and the demo's and the tiny profile's (the tests')


def _stored_figures() -> dict:
    """The traced figures of FIGURES_FILE by signature; none (all traced when asked for) if it is absent."""
    stored = read_json(FIGURES_FILE, {"figures": {}})["figures"]
    return {key: Figures(*values) for key, values in stored.items()}


def as_stored(fig: Figures) -> list:
    """A figure as FIGURES_FILE holds it: bytes to the byte, FLOPs to six digits."""
    return [fig.trained, fig.total, *(round(v) for v in (fig.act_half, fig.act_fp32, fig.act_ckpt, fig.infer)),
            float(f"{fig.flops:.6g}")]


MEASURED: dict = _stored_figures()  # and, once traced in this process, every other shape asked for


def figures(kind: str, cfg, stage: str | None = None) -> Figures:
    """Per-item figures: stored for the full profile's shapes, traced (seconds) for any other."""
    key = signature(kind, cfg, stage)
    if key not in MEASURED:
        MEASURED[key] = trace(kind, cfg, stage)
    return MEASURED[key]



RESULTS = paths.REPO_ROOT / "benchmarks" / "results"


def gpu_measurements(folder: Path | None = None) -> list[dict]:
    """Rows of every gpu_check CSV under benchmarks/results/ (newest last, by the time in the file's name: a
    checkout resets the files' times); none when no GPU has run it. Read once per process
    (`gpu_measurements.cache_clear()` to read again)."""
    return list(_read_measurements(str(folder or RESULTS)))


@functools.lru_cache(maxsize=None)
def _read_measurements(folder: str) -> tuple:
    rows = []
    for path in sorted(Path(folder).glob("gpu_check-*.csv"), key=lambda p: (p.stem[-15:], p.name)):
        with open(path, encoding="utf-8", newline="") as fh:
            rows += [{**row, "file": path.name} for row in csv.DictReader(fh)]
    return tuple(rows)


gpu_measurements.cache_clear = _read_measurements.cache_clear


def _measured(kind: str, phase: str, platform: Platform, checkpointing: bool | None = None,
              key: str | None = None) -> dict | None:
    """The newest GPU measurement of `kind` in `phase` (on the platform's GPU model for rates: `same_gpu`), of the
    model shape `key` (`signature`) where given: the full profile's figures say nothing of a smaller model's."""
    found = None
    for row in gpu_measurements():
        if row.get("kind") != kind or row.get("phase") != phase or row.get("verdict") in ("smoke", "error"):
            continue
        if key is not None and row.get("signature") != key:
            continue
        if checkpointing is not None and row.get("checkpointing", "").lower() != str(checkpointing).lower():
            continue
        found = {**row, "same_gpu": bool(platform.gpu) and platform.gpu in row.get("gpu", "")}
    return found


def _with_measurements(fig: Figures, kind: str, platform: Platform, key: str | None = None) -> Figures:
    """Per-item activation and inference bytes measured on a GPU replace the traced ones (any GPU: bytes per item
    do not depend on the card)."""
    changes, files = {}, set()
    for ckpt, name in ((False, "act_half"), (True, "act_ckpt")):
        row = _measured(kind, "train", platform, ckpt, key)
        if row and row.get("act_mib_per_item"):
            changes[name] = float(row["act_mib_per_item"]) * 2**20
            files.add(row["file"])
    row = _measured(kind, "predict", platform, key=key)
    if row and row.get("infer_mib_per_item"):
        changes["infer"] = float(row["infer_mib_per_item"]) * 2**20
        files.add(row["file"])
    return replace(fig, **changes, source="GPU-measured: " + ", ".join(sorted(files))) if changes else fig


def _host_row() -> dict | None:
    return next((r for r in reversed(gpu_measurements()) if r.get("phase") == "host" and r.get("peak_gb") and
                 r.get("verdict") != "smoke"), None)


def host_base_gb() -> float:
    """A notebook process's resident memory before any model: gpu_check's measurement, else HOST_BASE_GB."""
    row = _host_row()
    return float(row["peak_gb"]) if row else HOST_BASE_GB


def host_base_source() -> tuple[str | None, str]:
    """Where host_base_gb comes from: (where gpu_check measured it, "") or (None, the assumed constant)."""
    row = _host_row()
    return (f"GPU machine: benchmarks/results/{row['file']}", "") if row else (None, "HOST_BASE_GB")


def _encoder_params(modality: str, cfg) -> int:
    """Parameters of the configuration's text or image encoder (built on the meta device, counted once)."""
    import torch

    key = ("encoder", modality, cfg.text_model if modality == "text" else cfg.image_model)
    if key not in MEASURED:
        with torch.device("meta"):
            MEASURED[key] = sum(p.numel() for p in random_backbone(modality, cfg).model.parameters())
    return MEASURED[key]


def _state_bytes(cfg, tokens: bool) -> dict[str, int]:
    """Bytes per row of each modality's cache entry: token states (bottom and final fp16, text mask) or one pooled
    float32 vector (features.pooled_features)."""
    import torch

    key = ("states", cfg.text_model, cfg.max_len, cfg.image_model, cfg.image_size, cfg.text_top_layers,
           cfg.image_top_stages)
    if key not in MEASURED:
        model = build("late_fusion", replace(cfg, training_mode="cached", schedules={}))
        with torch.no_grad():
            raw = {"input_ids": torch.ones(1, cfg.max_len, dtype=torch.long, device="meta"),
                   "attention_mask": torch.ones(1, cfg.max_len, dtype=torch.long, device="meta"),
                   "pixels": torch.zeros(1, 3, cfg.image_size, cfg.image_size, device="meta")}
            low_t = model.text.bottom(raw["input_ids"], raw["attention_mask"])
            low_i = model.image.bottom(raw["pixels"])
            final_i = model.image.top(low_i)
        MEASURED[key] = {"text": (2 * low_t.numel() * 2 + cfg.max_len, low_t.shape[-1] * 4),
                         "image": (low_i.numel() * 2 + final_i.numel() * 2, final_i.shape[-1] * 4)}
    return {m: v[0 if tokens else 1] for m, v in MEASURED[key].items()}


def _encoder_figures(modality: str, cfg) -> Figures:
    """The frozen encoder's figures (a caching pass, the predictor's shared towers): its fine-tune read end to end."""
    raw = replace(cfg, training_mode="end_to_end", schedules={}, text_head="pooled", grad_checkpointing=False)
    return figures("text_finetuned" if modality == "text" else "image_finetuned", raw)


