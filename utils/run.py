"""One run: its resolved configuration, its folder (everything it writes), its dataset and validation split.

A run is named from profile, data folder and seed (`demo-generated-seed0`, overridable with `run_name`) and
writes only into `<output_dir>/<run_name>/`: `config.json` at the top, then executed notebooks, figures,
metrics, splits, folds, OOF and test probabilities, checkpoints, label suspects, the submission, Grad-CAM
points and `predictor.json`. Caches that are safe to share between runs (keyed by content) live in
`cache_dir`, by default `<output_dir>/cache`.

A run's configuration is resolved and planned here (`for_run`; `python -m utils.run` for run_all.sh), one level
above both the configuration and the plan, since the plan imports the configuration.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import paths
from . import lock
from .config import (Config, ConfigError, build, bundled_data_dir, changed_settings, parse_settings, read, record,
                     resolve, run_dir)
from .io import write_csv, write_json
from .runtime import DeviceError, pick_device, require_device, seed_everything


def _unlimited():
    from .training import TimeBudget

    return TimeBudget()


@dataclass
class Run:
    cfg: Config
    label_fixes: Path | None
    budget: "TimeBudget" = field(default_factory=_unlimited)  # this notebook's training time (time_budget_hours)

    @property
    def dir(self) -> Path:
        return run_dir(self.cfg)

    @property
    def name(self) -> str:
        return self.cfg.run_name

    @property
    def data_dir(self) -> Path:
        return Path(self.cfg.data_dir)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cfg.cache_dir)

    @property
    def checkpoints(self) -> Path:
        """Checkpoints and histories of every training run (resumable, skipped when unchanged)."""
        return self.dir / "checkpoints"

    @property
    def device(self) -> str:
        """Where this run's models run: the configured device (auto: a GPU when present)."""
        return pick_device(self.cfg.device)

    @property
    def generated(self) -> bool:
        """True on the bundled GENERATED data, which has ground truth; real data has none."""
        return (self.data_dir / "GENERATED.txt").exists()

    def dataset(self, check_images: bool = True, fixed: bool = True):
        """The run's dataset, validated; with its reviewed label fixes unless `fixed=False` (labels as given).
        Decoding every image takes seconds, so it is done once per dataset content: a marker keyed by the
        content fingerprint (every CSV and image byte) skips it in later notebooks; any edit checks again."""
        from .data import load_dataset
        from .features import dataset_fingerprint

        marker = None
        if check_images and all((self.data_dir / name).is_file() for name in ("train.csv", "test.csv")):
            marker = self.cache_dir / "validated" / f"{dataset_fingerprint(self.data_dir, self.cache_dir)}.ok"
        ds = load_dataset(self.data_dir, check_images=check_images and not (marker and marker.exists()),
                          label_fixes=self.label_fixes if fixed else None)
        if marker is not None and not marker.exists():
            write_json({"data_dir": str(self.data_dir), "images_checked": len(ds.train) + len(ds.test)}, marker)
        return ds

    def validation_split(self, ds) -> tuple[np.ndarray, np.ndarray]:
        """Train and validation row positions (`splits.run_split`); recomputed from the run's seed every time
        (milliseconds) and written to validation_split.csv for the reader, never reused stale."""
        from .splits import run_split

        split = run_split(ds, self.cfg.seed)
        write_csv(split, self.dir / "validation_split.csv")
        is_val = split["split"].to_numpy() == "val"
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# ------------------------------------------------------------ a run's configuration, planned
def planned_settings(cfg: Config, keep=()) -> dict:
    """Where a GPU run is planned (the full profile, or `platform` set): the settings its plan adapts, or its
    platform's preset gives up (each said once, with why), never those the user set (`keep`). A GPU run the
    plan says cannot fit is refused before the first notebook, naming the --set that would make it fit; on the
    CPU (device=cpu asked for) the plan's warnings are printed and the run goes ahead."""
    if cfg.profile != "full" and not cfg.platform:
        return {}
    from . import plan  # here, not in config.py: the plan imports the configuration

    try:
        new, notes, faults = plan.prepare(cfg, keep=tuple(keep))
    except plan.PlanError as exc:
        raise ConfigError(str(exc)) from None
    for note in notes:
        print(f"plan: {note}", file=sys.stderr)
    if faults and (cfg.platform or str(cfg.device) != "cpu"):
        raise ConfigError("this run does not fit (python -m utils.plan shows the plan):\n  " + "\n  ".join(faults))
    for fault in faults:
        print(f"plan (warning, on the CPU as asked): {fault}", file=sys.stderr)
    return changed_settings(cfg, new)


def for_run(profile: str, settings: dict) -> Config:
    """A run's configuration: its profile with `settings`, validated and resolved, the device checked, and a GPU
    run's plan applied (each change said once, a key in `settings` never changed); what run_all.sh records and what
    a notebook opened by hand starts from."""
    cfg = resolve(build(profile, settings))
    require_device(cfg)
    planned = planned_settings(cfg, keep=settings)
    return resolve(build(profile, {**settings, **planned})) if planned else cfg


def default_label_fixes(data_dir: Path, label_fixes: str = "") -> Path | None:
    """The reviewed corrections that apply to `data_dir`: `label_fixes` if given ("none" for none),
    else data/label_fixes.csv for the bundled dataset, else <data_dir>/label_fixes.csv if present."""
    if label_fixes == "none":
        return None
    if label_fixes:
        return Path(label_fixes).expanduser().resolve()
    if data_dir == paths.BUNDLED_DATA_DIR.resolve() and paths.LABEL_FIXES_CSV.exists():
        return paths.LABEL_FIXES_CSV
    own = data_dir / "label_fixes.csv"
    return own if own.exists() else None


def _check_disk(cfg) -> None:
    """Before each notebook of a run_all.sh run (it names the notebook: PIPELINE_NOTEBOOK), the disk the notebook
    will need, from the plan's arithmetic on this run's data: refused now, naming the folder, the need and the free
    space, rather than a full disk hours later."""
    notebook = os.environ.get("PIPELINE_NOTEBOOK")
    if not notebook:
        return
    from .io import DiskFull
    from .plan import disk_shortfalls

    short = disk_shortfalls(cfg, notebook)
    if short:
        raise DiskFull(errno.ENOSPC, "; ".join(short))


def start(profile: str = "demo", data_dir: str = "", output_dir: str = "", seed: int = 0, run_name: str = "",
          settings: dict | None = None, config: str = "") -> Run:
    """Seed everything, take the run's configuration, make sure the data exists, and say in one line which data,
    profile and run folder this is. `config`: the run's config.json (run_all.sh resolved and validated it once);
    empty (a notebook opened by hand): resolved here from the other arguments and recorded as config.json."""
    if config:
        cfg = read(config)
    else:
        given = {k: str(v) for k, v in {"data_dir": data_dir, "output_dir": output_dir, "run_name": run_name}.items() if v}
        cfg = for_run(profile, {"seed": int(seed), **given, **(settings or {})})  # SET's keys win
    seed_everything(cfg.seed)
    if cfg.data_size and Path(cfg.data_dir) == bundled_data_dir(cfg.data_size).resolve():
        from .generate import ensure_dataset

        ensure_dataset(Path(cfg.data_dir), seed=0, size=cfg.data_size)  # the bundled data is one fixed thing
    elif not Path(cfg.data_dir).is_dir():
        raise FileNotFoundError(f"{cfg.data_dir}: data folder not found")
    from .training import TimeBudget, set_session_budget  # torch: not for run_all.sh's resolver (python -m utils.run)

    run = Run(cfg, default_label_fixes(Path(cfg.data_dir), cfg.label_fixes), TimeBudget(cfg.time_budget_hours))
    set_session_budget(run.budget)
    run.dir.mkdir(parents=True, exist_ok=True)
    lock.acquire(run.dir)  # a notebook opened on a run that another process runs stops here, naming it
    _check_disk(cfg)
    if not config:
        record(cfg)
    kind = ("GENERATED bundled data (not the real contest data)" if run.generated else
            "data with ground truth in truth/" if paths.truth_dir(run.data_dir).is_dir() else "real data (no ground truth)")
    fixes = f" | label fixes {run.label_fixes}" if run.label_fixes else ""
    print(f"run {run.name} | profile {cfg.profile} | data {run.data_dir} [{kind}] | seed {cfg.seed}{fixes}\n"
          f"writing to {run.dir} (cache {run.cache_dir})")
    return run


def notebook(settings: dict, config: str, fixed: bool = True):
    """A notebook's first line: the run (`start`), its configuration and its dataset (with the reviewed label
    fixes unless `fixed=False`: 01 and 02 read the labels as given). `settings`: the notebook's SET, whose
    `profile` (default demo) and `data_dir` (default the bundled data) name what `start` takes apart."""
    settings = dict(settings)
    profile, data_dir = settings.pop("profile", "demo"), settings.pop("data_dir", "")
    run = start(profile, data_dir, settings=settings, config=config)
    return run, run.cfg, run.dataset(fixed=fixed)


def main(argv=None) -> int:
    """`python -m utils.run`, for run_all.sh: validate `--set` pairs up front, plan the run, print its folder and
    write the resolved configuration to `--out`; `--record FILE`: make that configuration the run's config.json
    (once the run holds its lock)."""
    parser = argparse.ArgumentParser(description="Resolve a run's configuration (used by run_all.sh).")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--output-dir", default="")
    parser.add_argument("--run-name", default="")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--out", default="", help="write the resolved configuration (JSON) here")
    parser.add_argument("--record", default="", help="a file --out wrote: record it as the run's config.json")
    args = parser.parse_args(argv)
    if args.record:
        print(record(read(args.record)))
        return 0
    try:
        settings = parse_settings(args.sets)
        base = {"data_dir": args.data_dir, "output_dir": args.output_dir, "run_name": args.run_name, "seed": args.seed}
        cfg = for_run(args.profile, {**settings, **{k: v for k, v in base.items() if v != ""}})
    except (ConfigError, DeviceError) as exc:
        print(f"run_all.sh: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_json(cfg.to_dict(), args.out)
    print(run_dir(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
