"""What a run changes to fit a platform: `adapt` changes only what leaves the training as it is (micro-batch with
gradient accumulation, gradient checkpointing, one process per model, checkpoints within long epochs, the cache
folder); `preset` (`--set platform=NAME`) then gives up parts of the recipe, saying which and why, until it fits.

Why greedy in a fixed order: the recipe's parts that cost most and add least go first, so that what a preset
gives up is the same on every run and can be said in a sentence.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from .assumed import MIN_MICRO_BATCH
from .costs import _cost_trained, _processes
from .fits import fits_of
from .make import make_plan, overflows, usable
from .platforms import PLATFORMS, Platform, as_platform


def _micro_batches(cfg) -> list[tuple[int, bool]]:
    """(micro-batch, checkpointing) in the order tried: no checkpointing down to MIN_MICRO_BATCH, then
    checkpointing from the configured micro-batch down; each divides the effective batch."""
    effective = cfg.batch_size * cfg.grad_accum
    sizes = [b for b in range(cfg.batch_size, 0, -1) if effective % b == 0]
    plain = [(b, False) for b in sizes if b >= min(MIN_MICRO_BATCH, cfg.batch_size)]
    return plain + [(b, True) for b in sizes] + [(b, False) for b in sizes if b < MIN_MICRO_BATCH]


TRAINING_KINDS = ("text_tfidf", "cache", "encode", "predict", "gradcam")  # fits that are not training units


def _training_fits(trial, platform: Platform) -> tuple[bool, bool]:
    """Whether every training fit fits the card with `trial`, and whether it fits the RAM and the disk (its own
    last.pt rewrites) as well."""
    limit, gpu, rest = usable(platform), True, True
    for fit in fits_of(trial):
        if fit.kind in TRAINING_KINDS:
            continue
        fit = _cost_trained(fit, trial, platform)
        gpu = gpu and fit.gpu_memory_gb <= limit["gpu"]
        rest = rest and fit.host_ram_gb <= limit["ram"] and fit.disk_gb - fit.kept_gb <= limit["run"]
    return gpu, rest


def _batching(cfg, platform: Platform):
    """The first configuration whose training fits fit the card: the configured processes, then one process; within
    each, the micro-batches of `_micro_batches`; one process where more would not fit the RAM or the disk either.
    None when even micro-batch 1 with checkpointing does not fit the card."""
    effective, found = cfg.batch_size * cfg.grad_accum, None
    for processes in [cfg.processes] + ([1] if _processes(cfg, platform) > 1 else []):
        for micro, ckpt in _micro_batches(cfg):
            trial = replace(cfg, batch_size=micro, grad_accum=effective // micro, processes=processes,
                            grad_checkpointing=ckpt or cfg.grad_checkpointing)
            gpu, rest = _training_fits(trial, platform)
            if gpu:
                found = found or trial
                if rest:
                    return trial
                break  # a smaller micro-batch changes neither RAM nor disk: try fewer processes
    return found


def adapt(cfg, platform=None) -> tuple:
    """`cfg` changed only where the training stays the same, so that every fit fits `platform`: the micro-batch
    (gradient accumulation keeps the effective batch), gradient checkpointing, one process per model where two
    would not fit, a checkpoint every 30 minutes and a clean stop an hour before a session ends, the cache on the
    platform's local disk. Returns the new configuration and one note per change (`KEY=VALUE: why`)."""
    platform = as_platform(platform, cfg)
    if not platform.gpus:
        return cfg, []
    new = _batching(cfg, platform) or cfg
    if new.num_workers != 0 and not _training_fits(new, platform)[1] and \
            _training_fits(replace(new, num_workers=0), platform)[1]:
        new = replace(new, num_workers=0)
    if platform.session_hours:
        new = replace(new, checkpoint_minutes=new.checkpoint_minutes or 30.0,
                      time_budget_hours=new.time_budget_hours or platform.session_hours - 1)
    if platform.cache_dir and not cfg.cache_dir:
        new = replace(new, cache_dir=platform.cache_dir)
    return new, _notes(cfg, new, platform)


WHY = {"batch_size": "micro-batch that fits the card ({gpu:.0f} GB), gradient accumulation keeps the effective batch",
       "grad_accum": "batches per optimiser step: effective batch {eff} as configured",
       "grad_checkpointing": "recompute encoder activations in backward: a third more compute, a fifth of the memory",
       "processes": "one process per model: two would each hold DDP's gradient buckets or a second last.pt",
       "checkpoint_minutes": "a session that ends loses at most this much training (resumed exactly)",
       "time_budget_hours": "06 stops cleanly before the {session:.0f} h session ends; rerun to continue",
       "num_workers": "photos decoded in the training process: a loader worker's RAM (the same batches: an "
                      "item's augmentation is seeded by its row and epoch)",
       "cache_dir": "the content-keyed cache on the session's local disk (rebuilt when it is gone)"}


def _notes(old, new, platform: Platform) -> list[str]:
    values = {"gpu": platform.gpu_memory_gb, "eff": new.batch_size * new.grad_accum, "session": platform.session_hours}
    return [f"{key}={_text(getattr(new, key))}: {why.format(**values)}" for key, why in WHY.items()
            if getattr(old, key) != getattr(new, key)]


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def changed_settings(old, new) -> dict:
    """The `--set` pairs that turn `old` into `new` (plain keys and schedule scopes)."""
    out = {k: _text(getattr(new, k)) for k in asdict(new) if k != "schedules" and getattr(old, k) != getattr(new, k)}
    for scope, values in new.schedules.items():
        for name, value in values.items():
            if old.schedules.get(scope, {}).get(name) != value:
                out[f"{scope}.{name}"] = _text(value)
    return out


# What a preset gives up, in this order, until the run fits its platform (the recipe's most expensive parts that
# cost it least first; the 9th place measured +0.001 private F1 for distillation, and seeds beyond one add less
# than folds and epochs do).
PRESET_STEPS = (
    ({"distill": False}, "distillation (students on the test rows' soft labels, 9th place: +0.001 private F1)"),
    ({"kfold_seeds": "0,1"}, "K-fold seeds: 2 per fold instead of {seeds}"),
    ({"kfold_seeds": "0"}, "K-fold seeds: one per fold"),
    ({"train_word_embeddings": False}, "training RoBERTa's token embeddings (32.8 M fewer weights in each checkpoint)"),
    ({"kfold_models": "text_finetuned,fusion_transformer"}, "06's image member (the fusion model reads the photos)"),
    ({"text_finetuned.epochs": 10}, "text fine-tune: 10 epochs instead of {text_epochs} (its rate halves every 10)"),
    ({"fusion_transformer.epochs": 5}, "fusion transformer: 5 epochs instead of {fusion_epochs}"),
    ({"n_folds": 3}, "3 folds instead of {folds} (02's experts, 06's members)"),
    ({"kfold_models": "text_finetuned"}, "06's fusion member (the text model alone, with 04/05's single models)"),
    ({"fusion_transformer.training_mode": "cached"},
     "the fusion transformer end to end: it trains on the frozen encoders' cached token states"),
)


def _fits_platform(cfg, platform: Platform) -> bool:
    return _excess(cfg, platform) == 0


def _excess(cfg, platform: Platform) -> float:
    """How far `cfg` is from fitting: the overflows' relative excess plus the hours' excess over the budget."""
    plan = make_plan(cfg, platform)
    over = sum(need / have - 1 for _, _, need, have in overflows(plan))
    return over + (max(0.0, plan.hours / platform.budget_hours - 1) if platform.budget_hours else 0.0)


_PRESETS: dict = {}


def preset(cfg, platform=None, keep=()) -> tuple:
    """`cfg` made to fit `platform` (`--set platform=NAME`): adapted, and where that is not enough, parts of the
    recipe given up (PRESET_STEPS in order, least costly first, each where it brings the run closer; then any
    step that later ones made unneeded is restored), until every fit, the run's disk and the platform's hour
    budget (Platform.budget_hours) fit. Keys in `keep` (set by the user) are never changed. Returns the
    configuration and notes: what adapt changed, then `gave up: ...` per step."""
    platform = as_platform(platform, cfg)
    key = (repr(cfg), platform, tuple(sorted(keep)))
    if key not in _PRESETS:
        _PRESETS[key] = _preset(cfg, platform, keep)
    return _PRESETS[key]


def _preset(cfg, platform: Platform, keep) -> tuple:
    base = replace(cfg, platform=platform.name if platform.name in PLATFORMS else cfg.platform)
    steps = [step for step in PRESET_STEPS if not set(step[0]) & set(keep)]
    taken = _pruned(base, platform, _greedy(base, platform, steps))
    new, notes = adapt(_applied(base, taken), platform)
    values = {"seeds": len(cfg.training_seeds), "folds": cfg.n_folds,
              "text_epochs": cfg.schedule("text_finetuned").epochs,
              "fusion_epochs": cfg.schedule("fusion_transformer").epochs}
    notes += [f"gave up: {why.format(**values)} ({_pairs(settings)})" for settings, why in taken]
    if not _fits_platform(new, platform):
        notes.append(f"does not fit {platform.name} even so: see the problems")
    return new, notes


def _applied(cfg, steps) -> object:
    from ..config import apply_settings

    for settings, _ in steps:
        cfg = apply_settings(cfg, settings)
    return cfg


def _distance(base, steps, platform: Platform) -> float:
    return _excess(adapt(_applied(base, steps), platform)[0], platform)


def _greedy(base, platform: Platform, steps) -> list:
    """PRESET_STEPS in order, each taken where it brings the run closer to fitting, until it fits."""
    taken, now = [], _distance(base, [], platform)
    for step in steps:
        if now == 0:
            break
        if _already(_applied(base, taken), step[0]):
            continue
        closer = _distance(base, taken + [step], platform)
        if closer < now - 1e-9:
            taken, now = taken + [step], closer
    return taken


def _pruned(base, platform: Platform, taken: list) -> list:
    """`taken` without the steps that the later ones made unneeded (the latest kept: it made the run fit)."""
    for step in list(reversed(taken[:-1])):
        trial = [s for s in taken if s is not step]
        if _distance(base, trial, platform) == 0:
            taken = trial
    return taken


def _already(cfg, settings: dict) -> bool:
    from ..config import apply_settings

    return apply_settings(cfg, settings) == cfg


def _pairs(settings: dict) -> str:
    return " ".join(f"--set {k}={_text(v)}" for k, v in settings.items())

