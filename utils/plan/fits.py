"""What a run fits: every fit of notebooks 02-07 in run order, with the rows of each unit.

Why apart from their costs: the list follows the notebooks and the configuration alone; the same list is costed
on each platform, adapted and costed again.
"""
from __future__ import annotations

import csv
import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import kinds, paths
from .assumed import AUGMENT_VARIANTS, REAL_ROWS
from .weightless import reads


@dataclass
class Fit:
    """One fit of one notebook (several units: folds x seeds, or 03's variants), with what it needs."""

    notebook: str
    kind: str
    what: str
    units: int = 1
    at_once: int = 1              # units trained at the same time, one per GPU
    processes: int = 1            # data-parallel processes of one unit
    reads: str = "raw"            # raw, tokens, pooled, text, encode, predict, gradcam
    trained_params: int = 0
    micro_batch: int = 0
    grad_accum: int = 1
    checkpointing: bool = False
    gpu_memory_gb: float = 0.0    # per GPU, the CUDA context included
    host_ram_gb: float = 0.0
    disk_gb: float = 0.0          # kept after the fit plus its largest transient (a last.pt rewritten beside the old)
    kept_gb: float = 0.0
    folder: str = "run"           # run (the run folder) or cache
    hours: float = 0.0
    stage: str | None = None
    rows: tuple = (0, 0, 0)       # training, validation and test rows per unit
    provenance: dict = field(default_factory=dict)  # per figure: what measured it, the assumed constants below it

    def public(self) -> dict:
        out = asdict(self)
        out.pop("stage")
        out["rows"] = list(self.rows)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def data_rows(cfg) -> tuple[int, int]:
    """Train and test rows of the run's data: its CSVs when present, a generated size, else the contest's."""
    if cfg.data_dir and (Path(cfg.data_dir) / "train.csv").is_file():
        return tuple(_csv_rows(Path(cfg.data_dir) / f"{split}.csv") for split in ("train", "test"))
    from ..generate import SIZES as GENERATED

    return GENERATED.get(cfg.data_size, REAL_ROWS)


def _csv_rows(path: Path) -> int:
    """Records of a CSV (an overview may span lines), UTF-8 or CP949 as the loader reads them."""
    for encoding in ("utf-8-sig", "cp949"):
        try:
            with open(path, encoding=encoding, newline="") as fh:
                return sum(1 for _ in csv.reader(fh)) - 1
        except UnicodeDecodeError:
            continue
    return 0


@functools.lru_cache(maxsize=None)
def augmented_copies(train_rows: int) -> int:
    """03's augmented copies of a 20% validation split's training rows (augment.augmentation_probabilities over the
    real class sizes of data/dacon_tourism_taxonomy.csv: about 930 at the contest's size)."""
    with open(paths.TAXONOMY_CSV, encoding="utf-8") as fh:
        counts = [int(r["count"]) for r in csv.DictReader(fh) if r.get("count")]
    n = sum(counts)
    weight = [math.sqrt(n / c) for c in counts]
    low, span = min(weight), (max(weight) - min(weight)) or 1.0
    return int(0.8 * train_rows * sum(c * (w - low) / span for c, w in zip(counts, weight)) / n)


def kfold_members(cfg) -> list[str]:
    """06's members: the named ones, or for `auto` per family of the registry the one that costs most (the choice
    is made from 04/05's results, after this plan)."""
    if cfg.kfold_kinds is not None:
        return list(cfg.kfold_kinds)
    out = []
    for family in kinds.families():
        applies = kinds.names(family, cfg)
        whole = [k for k in applies if kinds.get(k).whole]  # trains whole encoders: the costliest of its family
        out += [(whole or list(applies))[-1]] if applies else []
    return out


def fits_of(cfg) -> list[Fit]:
    """Every fit of notebooks 02-07 in run order (01 trains nothing), with its rows per unit."""
    n, n_test = data_rows(cfg)
    k, seeds = cfg.n_folds, len(cfg.training_seeds)
    fold, split = (n * (k - 1) // k, n // k), (n - n // 5, n // 5)
    out = [Fit("02", kind, f"{k} folds (02's experts)", k, stage="kfold", rows=(*fold, n_test))
           for kind in cfg.label_expert_kinds]
    study = min(split[0], cfg.study_rows) if cfg.study_rows else split[0]  # 03 trains on a bounded sample
    copies = augmented_copies(study * 5 // 4)
    out.append(Fit("03", "encode", f"{copies} augmented copies encoded", rows=(0, 0, copies)))
    out.append(Fit("03", "late_fusion", f"{AUGMENT_VARIANTS} variants", AUGMENT_VARIANTS, stage="augmentation",
                   rows=(study + copies * 3 // AUGMENT_VARIANTS, split[1], 0)))  # 3 variants add the copies
    out += [Fit("04", kind, "validation split", rows=(*split, 0))
            for kind in kinds.names("text", cfg) + kinds.names("image", cfg)]
    out += [Fit("05", kind, "validation split", rows=(*split, 0)) for kind in kinds.names("multimodal", cfg)]
    students = 2 if cfg.distill else 1
    out += [Fit("06", kind, f"{k} folds x {seeds} seed(s)" + (" + students" if cfg.distill else ""),
                k * seeds * students, stage="kfold", rows=(fold[0], fold[1], n_test)) for kind in kfold_members(cfg)]
    out.append(Fit("06", "predict", "predictor check on the test rows",
                   rows=(0, 0, cfg.predictor_check_rows or n_test)))
    out.append(Fit("07", "gradcam", "Grad-CAM", rows=(0, 0, cfg.gradcam_explain + cfg.gradcam_calibrate)))
    return _with_cache_passes(out, cfg, n + n_test)


def _with_cache_passes(out: list[Fit], cfg, rows: int) -> list[Fit]:
    """An encoding pass before the first fit that reads each modality's cache (pooled vectors, or token states
    where some model trains on them: features.needs_token_states)."""
    done, result = set(), []
    for fit in out:
        if fit.kind in kinds.KINDS and reads(fit.kind, cfg, fit.stage) in ("pooled", "tokens"):
            for modality in sorted(kinds.get(fit.kind).reads - done):
                result.append(Fit(fit.notebook, "cache", f"{modality} cache, every row", reads=modality,
                                  folder="cache", rows=(0, 0, rows)))
                done.add(modality)
        result.append(fit)
    return result


