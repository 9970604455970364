"""What cannot fit a platform, one sentence each, naming the `--set` that would make it fit; and `prepare`, what a
run does with its plan before its first notebook.

Why a sentence with its remedy: a refusal that only says "out of memory" sends the user to read the plan; one that
names adapt's or the preset's settings (and what the preset gives up) can be acted on at once.
"""
from __future__ import annotations

from pathlib import Path

from .. import paths
from .assumed import USABLE
from .fits import Fit
from .make import Plan, _disk_peaks, make_plan, overflows
from .platforms import PLATFORMS, Platform, as_platform, detect_platform
from .presets import TRAINING_KINDS, _fits_platform, _pairs, adapt, changed_settings, preset


RESOURCE = {"gpu": "GPU memory", "ram": "host RAM", "run": "disk for the run folder", "cache": "disk for the cache"}


def problems(cfg, platform=None, free_disk: dict | None = None) -> list[str]:
    """What cannot fit `platform` as configured, one sentence each, naming the `--set` that would make it fit
    (adapt's when that suffices, else the preset's, which says what it gives up). `free_disk`: {folder: free GB}
    measured where the run writes (the run folder and the cache; a folder may be a parent of them)."""
    platform = as_platform(platform, cfg)
    plan = make_plan(cfg, platform)
    out = [_problem(fit, resource, need, have, cfg, platform) for fit, resource, need, have in overflows(plan)
           if fit is not None or free_disk is None]
    out = [_shorter(text, out[:i]) for i, text in enumerate(out)]
    out += _disk_problems(plan, cfg, free_disk) if free_disk is not None else []
    if platform.session_hours and not cfg.checkpoint_minutes and any(
            f.hours / max(1, f.units) * f.at_once > platform.session_hours for f in plan.fits):
        out.append(f"a fit takes longer than a {platform.session_hours:.0f} h session and nothing saves it within "
                   f"its epochs: --set checkpoint_minutes=30 (resumes exactly where it stopped)")
    return out


REMEDY_KEYS = {"gpu": ("batch_size", "grad_accum", "grad_checkpointing", "processes"),
               "ram": ("num_workers", "processes"), "run": ("processes",), "cache": ("cache_dir",)}


def _shorter(text: str, before: list[str]) -> str:
    """A remedy said in full once; later problems with the same one refer to it."""
    head, _, remedy = text.partition(" usable: ")
    if any(b.endswith(remedy) for b in before) and "; it gives up" in remedy:
        return f"{head} usable: {remedy.split(',')[0]} (as above)"
    return text


def _remedy(cfg, platform: Platform, fit: Fit | None, resource: str) -> str:
    """The `--set` pairs that make `fit` (None: the run) fit: adapt's alone where they suffice, else the preset's
    with what it gives up."""
    adapted, _ = adapt(cfg, platform)
    if fit is not None and _fit_ok(adapted, platform, fit):
        changes = changed_settings(cfg, adapted)
        return _pairs({k: v for k, v in changes.items() if k in REMEDY_KEYS[resource]} or changes)
    fitted, notes = preset(cfg, platform)
    if not _fits_platform(fitted, platform):
        return "no setting makes it fit this platform: a GPU with more memory, more RAM or disk"
    gave = [n.split(" (--set")[0].removeprefix("gave up: ") for n in notes if n.startswith("gave up")]
    changes = {k: v for k, v in changed_settings(cfg, fitted).items() if k != "platform"}
    head = f"--set platform={platform.name}, which sets" if platform.name in PLATFORMS else "--set"
    return f"{head} {_pairs(changes).replace('--set ', '')}; it gives up: {'; '.join(gave) or 'nothing'}"


def _fit_ok(cfg, platform: Platform, fit: Fit) -> bool:
    same = (fit.notebook, fit.kind, fit.what)
    return not any(f is not None and (f.notebook, f.kind, f.what) == same
                   for f, *_ in overflows(make_plan(cfg, platform)))


def _problem(fit: Fit | None, resource: str, need: float, have: float, cfg, platform: Platform) -> str:
    what = "the run at its fullest" if fit is None else f"{fit.notebook} {fit.kind} ({fit.what})"
    extra = ""
    if fit is not None and fit.kind not in TRAINING_KINDS and resource == "gpu":
        extra = f" at micro-batch {fit.micro_batch}{' with checkpointing' if fit.checkpointing else ''}"
    return (f"{what} needs {need:.1f} GB of {RESOURCE[resource]}{extra}; {platform.name} has {have:.1f} GB usable: "
            f"{_remedy(cfg, platform, fit, resource)}")


def run_folders(cfg) -> dict[str, Path]:
    """Where the run writes: its run folder (checkpoints) and the cache."""
    output = Path(cfg.output_dir).expanduser() if cfg.output_dir else paths.OUTPUTS
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else output / "cache"
    return {"run": output / (cfg.run_name or "<run>"), "cache": cache}


def _disk_problems(plan: Plan, cfg, free_disk: dict) -> list[str]:
    """Each folder's need against the free space measured on its disk (folders on one disk share it)."""
    need = {"run": _disk_peaks([f for f in plan.fits if f.folder == "run"], False)["run"],
            "cache": plan.folders_gb["cache"]}
    disks: dict[str, list[str]] = {}
    for name, folder in run_folders(cfg).items():
        key = max((k for k in free_disk if _under(folder, k)), key=lambda k: len(str(k)), default=None)
        if key is not None:
            disks.setdefault(key, []).append(name)
    out = []
    for key, names in disks.items():
        needed, free = sum(need[n] for n in names), float(free_disk[key])
        if needed > free * USABLE:
            out += [_disk_message(name, run_folders(cfg)[name], needed, free, plan, cfg) for name in names
                    if need[name] > 0]
    return out


def _under(folder: Path, key) -> bool:
    folder, key = Path(folder).resolve(), Path(key).expanduser().resolve()
    return folder == key or key in folder.parents


def _disk_message(name: str, folder: Path, needed: float, free: float, plan: Plan, cfg) -> str:
    if name == "cache":
        return (f"the cache folder {folder} needs {needed:.1f} GB on a disk with {free:.1f} GB free: "
                f"--set cache_dir=PATH on a disk with {needed / USABLE:.1f} GB free")
    fix = f"--set output_dir=PATH (./run_all.sh --output-dir PATH) on a disk with {needed / USABLE:.1f} GB free"
    return (f"the run folder {folder} needs {needed:.1f} GB (checkpoints; a last.pt is rewritten beside the old one) "
            f"on a disk with {free:.1f} GB free: {fix}, or {_remedy(cfg, plan.platform, None, 'run')}")


def prepare(cfg, free_disk: dict | None = None, keep=()) -> tuple:
    """What a run does before its first notebook: with `platform` set, its preset (adapted, and what it gives up);
    otherwise the GPU found here, adapted. Returns (configuration, notes, problems): the run refuses to start
    while problems remain."""
    if cfg.platform:
        new, notes = preset(cfg, cfg.platform, keep)
    else:
        new, notes = adapt(cfg, detect_platform(cfg.output_dir or None))
    platform = as_platform(None, new)
    return new, notes, problems(new, platform, free_disk)

