"""The disk each notebook of a run needs, checked before it starts (run.py, for run_all.sh's notebooks).

Why before each notebook: a full disk hours into a fit loses them; a check that reads the plan's per-notebook
needs (kept in the run folder) and the disk's free space refuses at once, naming the folder and the way out.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import kinds
from ..io import amount, read_json, write_json
from .assumed import GB
from .fits import data_rows
from .make import make_plan


def _size_gb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / GB if folder.is_dir() else 0.0


def _checkpoint_folders(notebook: str, fit_kinds: list[str]) -> set[str]:
    """The folders under the run's checkpoints/ that a notebook's fits write (what a rerun finds there already)."""
    return {"02": {"label_fixing"}, "03": {"augmentation"}, "06": {"kfold", "distill"}}.get(
        notebook, {kind for kind in fit_kinds if kind in kinds.KINDS})


def notebook_disk_needs(cfg) -> dict:
    """Per notebook, the GB its fits write into the run folder and the cache, and its fits' kinds: the plan's, kept
    in the run folder (`disk_plan.json`, keyed by the configuration and the data's rows), so that the check before
    each notebook reads a file instead of planning again."""
    path = Path(cfg.output_dir) / cfg.run_name / "disk_plan.json"
    key = json.dumps({"cfg": cfg.to_dict(), "rows": data_rows(cfg)}, sort_keys=True, default=str)
    memo = read_json(path)
    if memo and memo.get("key") == key:
        return memo["needs"]
    needs: dict = {}
    for fit in make_plan(cfg).fits:
        entry = needs.setdefault(fit.notebook, {"run": 0.0, "cache": 0.0, "kinds": []})
        entry[fit.folder] += fit.disk_gb
        entry["kinds"].append(fit.kind)
    try:
        write_json({"key": key, "needs": needs}, path)
    except OSError:  # a full disk: the check that follows says so better than this memo would
        pass
    return needs


def disk_shortfalls(cfg, notebook: str, free_gb=None) -> list[str]:
    """Where notebook `notebook` ("04") would run out of disk: per folder (run folder, cache) what its fits write,
    less what they already wrote there (a rerun resumes), against the folder's free space (`free_gb`: a
    function of a folder, for tests). Each names the folder, the need, the free space and the way out."""
    import shutil

    free_gb = free_gb or (lambda folder: shutil.disk_usage(folder).free / GB)
    run_dir = Path(cfg.output_dir) / cfg.run_name
    needs = notebook_disk_needs(cfg).get(notebook, {"run": 0.0, "cache": 0.0, "kinds": []})
    folders = {"run": (run_dir, "--output-dir"), "cache": (Path(cfg.cache_dir), "--cache-dir")}
    held = {"run": sum(_size_gb(run_dir / "checkpoints" / sub) for sub in _checkpoint_folders(notebook, needs["kinds"])),
            "cache": _size_gb(Path(cfg.cache_dir))}  # the cache is shared by content: counted whole, leniently
    out = []
    for name, (folder, option) in folders.items():
        need = needs[name] - held[name]
        existing = folder
        while not existing.exists():
            existing = existing.parent
        if need > 0 and free_gb(existing) < need:
            out.append(f"{folder}: notebook {notebook} writes about {amount(need)} there and its disk has "
                       f"{amount(free_gb(existing))} free; free space, or move it with {option} (python -m utils.plan "
                       f"shows the whole run's needs)")
    return out
