"""The plan's command line and its text: `python -m utils.plan` (see the package's docstring for the figures).

    python -m utils.plan --profile full --platform colab-t4          # one platform (default: the GPU found here)
    python -m utils.plan --profile full --platform all --json        # colab-t4, kaggle-2xt4, a100-40, h100-80
    python -m utils.plan --profile full --measure                    # recompute the per-item figures (a minute)
    python -m utils.plan --profile demo --measure                    # and the demo's, and tiny's (the tests')

`--json` gives each figure's provenance (what measured it, which assumed constants it rests on) and the table of
those constants (utils/plan/assumed.py).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..io import read_json, write_json
from .assumed import as_json
from .make import Plan, make_plan
from .measured import FIGURES_FILE, MEASURED, as_stored
from .platforms import PLATFORMS, PlanError, platform_named
from .presets import _PRESETS, adapt, changed_settings, preset
from .refusals import problems

DESCRIPTION = ("A resource plan before anything runs: what each fit of each notebook needs, and what the run "
               "adapts or refuses.")


def summary(plan: Plan, problems_found: list[str]) -> str:
    """The plan as text: the platform, what changed, one line per fit, the totals, the problems."""
    p = plan.platform
    session = f"sessions of {p.session_hours:g} h" if p.session_hours else "no session limit"
    lines = [f"== {p.name}: {p.gpus} x {p.gpu or 'no GPU'} {p.gpu_memory_gb:g} GB, RAM {p.host_ram_gb:g} GB, disk "
             f"{p.disk_gb:g} GB, {session}; precision {plan.precision}"]
    lines += [f"  {note}" for note in plan.notes]
    lines.append(f"  {'nb':<3}{'kind':<19}{'what':<34}{'trained':>9}{'batch':>9}{'GPU GB':>8}{'RAM GB':>8}"
                 f"{'disk GB':>9}{'hours':>8}")
    for f in plan.fits:
        batch = f"{f.micro_batch}x{f.grad_accum}{'c' if f.checkpointing else ''}" if f.micro_batch else "-"
        lines.append(f"  {f.notebook:<3}{f.kind:<19}{f.what[:33]:<34}{f.trained_params / 1e6:>8.1f}M{batch:>9}"
                     f"{f.gpu_memory_gb:>8.1f}{f.host_ram_gb:>8.1f}{f.disk_gb:>9.1f}{f.hours:>8.2f}")
    sessions = f", {plan.sessions} session(s) of {p.session_hours:g} h" if plan.sessions else ""
    own = " on its own disk" if plan.disks_gb["cache"] else ""
    lines.append(f"  total: {plan.hours:.1f} h{sessions}; disk at its fullest {plan.disk_gb:.1f} GB (kept at the end: "
                 f"run folder {plan.folders_gb['run']:.1f}, cache {plan.folders_gb['cache']:.2f}{own}; the rest: a "
                 f"last.pt rewritten beside the old)")
    t = plan.tagging
    lines.append(f"  tagging a catalogue with every K-fold member listed (06 may keep fewer): {t['rows_per_s']:,.1f} "
                 f"rows/s per {'card' if p.gpus else 'machine'}, {t['largest_catalogue']:,} places in "
                 f"{t['hours']:,.1f} h; shards on N cards: N times as fast")
    lines += [f"  PROBLEM: {text}" for text in problems_found] or ["  fits: nothing to refuse"]
    return "\n".join(lines)


def plan_for(cfg, name: str, mode: str = "preset") -> tuple[Plan, list[str]]:
    """The plan a run of `cfg` follows on platform `name`: with its preset (default), adapted only, or as is."""
    platform = platform_named(name, cfg.output_dir or None)
    if mode == "preset":
        new, notes = preset(cfg, platform)
    elif mode == "adapt":
        new, notes = adapt(cfg, platform)
    else:
        new, notes = cfg, []
    plan = make_plan(new, platform)
    plan.settings, plan.notes = changed_settings(cfg, new), notes + plan.notes
    return plan, problems(new, platform)


def _measure(cfg) -> int:
    """Trace every figure the configuration's plans use on the four platforms, presets included, and write them
    into FIGURES_FILE beside the other profiles' (rounded as stored)."""
    for key in [k for k in MEASURED if isinstance(k, str)]:
        del MEASURED[key]
    _PRESETS.clear()
    for name in PLATFORMS:
        for mode in ("as-is", "adapt", "preset"):
            plan_for(cfg, name, mode)
    stored = read_json(FIGURES_FILE, {"figures": {}})
    for key, fig in MEASURED.items():
        if isinstance(key, str):
            stored["figures"][key] = as_stored(fig)
            print(key, stored["figures"][key])
    stored["figures"] = dict(sorted(stored["figures"].items()))
    write_json(stored, FIGURES_FILE)
    print(f"wrote {FIGURES_FILE}")
    return 0


def main(argv=None) -> int:
    from ..config import ConfigError, build, parse_settings

    parser = argparse.ArgumentParser(prog="python -m utils.plan", description=DESCRIPTION)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--platform", default=None, help=f"{', '.join(PLATFORMS)}, all, or detect (default: the "
                                                         f"GPU found here, else all)")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--mode", choices=("preset", "adapt", "as-is"), default="preset",
                        help="preset: the platform preset (--set platform=NAME); adapt: only what keeps the training; "
                             "as-is: the configuration unchanged")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", action="store_true", help="trace the per-item figures and store them")
    args = parser.parse_args(argv)
    try:
        data = {"data_dir": args.data_dir} if args.data_dir else {}
        cfg = build(args.profile, {**parse_settings(args.sets), **data})
        if args.measure:
            return _measure(cfg)
        names = _platform_names(args.platform or cfg.platform)
        plans = [plan_for(cfg, name, args.mode) for name in names]
    except (ConfigError, PlanError) as exc:
        print(f"utils.plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = [{**plan.to_json(), "problems": found} for plan, found in plans]
        whole = out[0] if len(out) == 1 else {"plans": out}
        print(json.dumps({**whole, "constants": as_json()}, ensure_ascii=False, indent=1))
    else:
        print("\n\n".join(summary(plan, found) for plan, found in plans))
    return 0


def _platform_names(name: str | None) -> list[str]:
    import torch

    if name == "all" or (not name and not torch.cuda.is_available()):
        if not name:
            print("no GPU here: the plan for each preset (--platform NAME for one)", file=sys.stderr)
        return list(PLATFORMS)
    return [name or "detect"]

