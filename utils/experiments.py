"""Train, score and record one model of any kind on given rows: the step notebooks 02–06 repeat.

Every kind, TF-IDF included, goes through `fit_model`, which returns a `Trained` that gives probabilities for
any rows of the run's data (train rows then test rows, the order of `features.feature_data`)."""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import distributed
from . import kinds as registry
from .baselines import describe_classifier, fit_quietly, tfidf_model, tfidf_probabilities
from .features import all_rows, feature_data, uninformed
from .io import DiskFull
from .metrics import evaluate, record
from .models import build_model
from .rows import RawRows
from .taxonomy import LEVELS
from .text import prime_content_morphemes
from .training import TimeBudget, TimeBudgetExceeded, fit, load_checkpoint, predict, session_budget

GROUP_STOPS = (TimeBudgetExceeded, DiskFull)  # a data-parallel group's stops that a rerun continues from


@dataclass
class Trained:
    """A fitted model: `probabilities(rows)` for any rows of its data; `checkpoint` for neural kinds."""

    kind: str
    model: object
    probabilities: Callable[[np.ndarray], dict]
    seconds: float
    best_epoch: int = 0
    history: list = field(default_factory=list)
    checkpoint: Path | None = None
    config: dict = field(default_factory=dict)  # what metrics.json records about how it was trained


def model_data(ds, cfg, kinds, labels_frame=None, stage: str | None = None):
    """What models of `kinds` train on: cached encoder states (`cached` mode, see features.feature_data) or raw
    rows decoded per batch (`end_to_end` mode, see rows.RawRows); all `kinds` must share their training mode."""
    keys = tuple(k for kind in kinds for k in registry.get(kind).inputs)
    modes = {kind: cfg.schedule(kind, stage).training_mode for kind in kinds}
    if len(set(modes.values())) > 1:
        raise ValueError(f"models {modes} train in different modes: ask for their data one mode at a time")
    if set(modes.values()) != {"end_to_end"}:
        return feature_data(ds, cfg, keys, labels_frame)
    modalities = [m for m in ("text", "image") if any(k.startswith(m) for k in keys)]
    return RawRows(ds, cfg, modalities, labels_frame)


def labels_of(data, indices) -> dict[str, np.ndarray]:
    return {level: data.labels_of(indices, level) for level in LEVELS}


def fit_tfidf(kind, data, train_idx, val_idx, ds, cfg, run_dir, seed, name="model", **_) -> Trained:
    """TF-IDF + a linear classifier on cat3 (cat1/cat2 summed from cat3); seconds to fit, so always refitted, and
    saved (run_dir/name/model.pkl) for the predictor."""
    from .io import save_model

    texts = all_rows(ds)["overview"].tolist()
    prime_content_morphemes(texts, cfg.cache_dir)
    classifier, scores = tfidf_choice(cfg, ds, data, texts)
    started = time.time()
    train_texts, labels = [texts[i] for i in train_idx], data.labels_of(train_idx)
    model = fit_quietly(tfidf_model(classifier, cfg.tfidf_alpha, seed), train_texts, labels)
    saved = save_model(model, Path(run_dir) / name / "model.pkl")

    def probabilities(rows):
        return tfidf_probabilities(model, [texts[i] for i in rows], ds.taxonomy)

    return Trained(kind, model, probabilities, time.time() - started, checkpoint=saved,
                   config={"kind": "tfidf", "model": describe_classifier(classifier, cfg.tfidf_alpha),
                           "chosen by": f"cross-validated weighted F1 {scores} (choose_classifier)" if scores else "tfidf_classifier"})


def tfidf_choice(cfg, ds, data, texts: list) -> tuple[str, dict]:
    """`tfidf_classifier`, or with `auto` the one `choose_classifier` finds best on the run's training rows (those
    of its validation split, 04's: the same whichever fit asks first, 06's folds in several processes included);
    kept in the run folder (tfidf_choice.json, keyed by those rows' texts and labels and the settings)."""
    from .baselines import CLASSIFIERS, choose_classifier
    from .config import run_dir
    from .io import read_json, write_json
    from .splits import run_split

    if cfg.tfidf_classifier != "auto":
        return cfg.tfidf_classifier, {}
    rows = np.flatnonzero(run_split(ds, cfg.seed)["split"].to_numpy() == "train")
    rows_texts, labels = [texts[i] for i in rows], data.labels_of(rows)
    key = hashlib.sha1(repr((rows_texts, labels.tolist(), cfg.tfidf_alpha, cfg.seed, CLASSIFIERS,
                             choose_classifier.__defaults__)).encode()).hexdigest()[:16]
    memo = run_dir(cfg) / "tfidf_choice.json" if cfg.run_name else None
    kept = read_json(memo, default={}) if memo else {}
    if kept.get("key") == key:
        return kept["classifier"], kept["scores"]
    classifier, scores = choose_classifier(rows_texts, labels, cfg.tfidf_alpha, cfg.seed)
    if memo:
        write_json({"key": key, "classifier": classifier, "scores": scores, "rows": len(rows)}, memo)
    return classifier, scores


def _fit_neural(kind, data, train_idx, val_idx, ds, cfg, run_dir, seed, stage=None, init_from=None,
                name="model", budget: TimeBudget | None = None, **overrides) -> Trained:
    """`overrides`: schedule fields changed for this fit (03's imbalance options, a test's short schedule)."""
    schedule = replace(cfg.schedule(kind, stage, seed), **overrides)
    identity = {"kind": kind, "taxonomy": ds.taxonomy.digest}
    model = build_model(kind, cfg, ds.taxonomy.sizes, seed, stage)
    if init_from is not None:
        load_checkpoint(model, init_from, partial=True)
        digest = hashlib.sha1(Path(init_from).read_bytes()).hexdigest()[:12]  # a retrained start retrains this
        identity["init_from"] = f"{init_from}@{digest}"
    fitted = fit(model, data, train_idx, val_idx, schedule, Path(run_dir) / name, name, identity, budget=budget,
                 checkpoint_minutes=cfg.checkpoint_minutes)
    described = {"kind": kind, **asdict(schedule), "text_model": cfg.text_model, "image_model": cfg.image_model}

    def probabilities(rows):
        """The validation rows' probabilities come from the best epoch's validation pass when this call ran it
        (same weights, already computed: an end-to-end e5 spends 13-20 s of the demo on 805 rows); others are
        predicted."""
        rows = np.asarray(rows)
        if fitted.val_probs is not None and np.array_equal(rows, val_idx):
            return {level: value.copy() for level, value in fitted.val_probs.items()}
        return predict(fitted.model, data, rows, device=cfg.device, precision=schedule.precision)

    return Trained(kind, fitted.model, probabilities, fitted.seconds, fitted.best_epoch, fitted.history,
                   Path(run_dir) / name / "best.pt", described)


def _fit_in_group(args: tuple, overrides: dict) -> None:
    """One process of a data-parallel fit (utils/distributed.py); process 0 writes the run folder."""
    _fit_neural(*args, **overrides)


def warm_start(kind: str, cfg, checkpoints_dir) -> Path | None:
    """Where 04's fine-tune starts: its frozen model's trained head (04 trains that first)."""
    frozen = registry.get(kind).starts_from(cfg)
    return None if frozen is None else Path(checkpoints_dir) / frozen / "best.pt"


def runnable(kinds, ds) -> list[str]:
    """`kinds` less the models that need photos when the dataset has none (said once, with why)."""
    if ds.has_photos:
        return list(kinds)
    dropped = [k for k in kinds if "image" in registry.get(k).reads]
    if dropped:
        print(f"no training row has a photo: skipping {', '.join(dropped)} (they read images); text models only")
    return [k for k in kinds if k not in dropped]


def _rows_with_photos(name: str, photo: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray):
    """An image-only model trains and early-stops on the rows that have a photo; says how many it leaves out."""
    keep_train, keep_val = train_idx[photo[train_idx]], val_idx[photo[val_idx]]
    if len(keep_train) == 0 or len(keep_val) == 0:
        raise ValueError(f"{name}: {len(keep_train)} training and {len(keep_val)} validation rows have a photo; an "
                         f"image-only model needs both (leave it out of the run: see experiments.runnable)")
    if len(keep_train) < len(train_idx) or len(keep_val) < len(val_idx):
        print(f"{name}: {len(train_idx) - len(keep_train)} of {len(train_idx)} training and {len(val_idx) - len(keep_val)} "
              f"of {len(val_idx)} validation rows have no photo and are left out; for a row without a photo this "
              f"image-only model answers uniform probabilities (no information; the blend ranks by the others)")
    return keep_train, keep_val


def _uniform_without_photo(trained: Trained, photo: np.ndarray, sizes: dict[str, int]) -> Trained:
    """`trained`, answering for rows without a photo as `features.uninformed` says."""
    inner = trained.probabilities

    def probabilities(rows):
        rows = np.asarray(rows)
        seen = photo[rows]
        out = {level: np.zeros((len(rows), sizes[level]), dtype=np.float32) for level in LEVELS}
        if seen.any():
            for level, value in inner(rows[seen]).items():
                out[level][seen] = value
        return uninformed(out, ~seen)

    return replace(trained, probabilities=probabilities)


def fit_model(kind: str, data, train_idx, val_idx, ds, cfg, run_dir, name: str, seed: int = 0,
              stage: str | None = None, init_from=None, budget: TimeBudget | None = None, **overrides) -> Trained:
    """Fit (or reload, when unchanged) model `kind` on `train_idx`, early-stopping on `val_idx`.
    `init_from`: a best.pt to start from (a fine-tune starts from its frozen model's trained head).
    `budget`: stop cleanly (TimeBudgetExceeded) before it runs out; a rerun continues."""
    trainer = registry.get(kind).fitter() or _fit_neural
    budget = budget if budget is not None else session_budget()  # handed to data-parallel processes too
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    photo = None
    if registry.get(kind).reads == {"image"}:
        photo = data.photo_rows()
        train_idx, val_idx = _rows_with_photos(name, photo, train_idx, val_idx)
    data = data.for_training(train_idx, seed)  # raw rows: augmentation reaches the rows this model trains on only
    if trainer is _fit_neural and data.raw and stage != "kfold" and distributed.world()[1] == 1 \
            and (processes := distributed.group_size(cfg)) > 1:  # one model on every GPU; K-fold units have one each
        distributed.launch(_fit_in_group, processes, ((kind, data, train_idx, val_idx, ds, cfg, run_dir, seed, stage,
                                                       init_from, name, budget), overrides), cfg.device,
                           stops=GROUP_STOPS)
        # below, this process finds what they trained under the same configuration and loads it
    trained = trainer(kind, data, train_idx, val_idx, ds, cfg, run_dir, seed, stage=stage, init_from=init_from,
                      name=name, budget=budget, **overrides)
    return trained if photo is None else _uniform_without_photo(trained, photo, ds.taxonomy.sizes)


def train_and_score(kind: str, data, train_idx, val_idx, ds, cfg, run_dir, name: str, seed: int = 0,
                    record_to=None, section: str = "models", stage: str | None = None, init_from=None, **overrides):
    """`fit_model`, then score on `val_idx`; recorded in `record_to`/metrics.json when given.
    Returns (result dict, validation probabilities, Trained)."""
    trained = fit_model(kind, data, train_idx, val_idx, ds, cfg, run_dir, name, seed, stage, init_from, **overrides)
    probs = trained.probabilities(np.asarray(val_idx))
    result = {**evaluate(probs, labels_of(data, val_idx), ds.taxonomy, cfg.decode), "train_seconds": round(trained.seconds, 1),
              "best_epoch": trained.best_epoch + 1, "history": trained.history}
    if record_to is not None:
        record(name, result, trained.config, record_to, section)
    return result, probs, trained


def load_trained(kind: str, cfg, ds, checkpoints_dir, name: str | None = None, seed: int = 0,
                 stage: str | None = None):
    """A model of `kind` with the best weights of its run folder (`checkpoints_dir/name`), loaded strictly."""
    best = Path(checkpoints_dir) / (name or kind) / "best.pt"
    if not best.exists():
        raise FileNotFoundError(f"{best}: no trained model; run the notebook that trains {name or kind} first")
    model = build_model(kind, cfg, ds.taxonomy.sizes, seed, stage)
    load_checkpoint(model, best)
    return model.eval()
