"""The plan of a run on one platform: every fit costed, the run's hours, sessions and disk at its fullest, and
what is over the platform's limits.

Why the disk in run order: checkpoints accumulate, so the run's disk is fullest at some fit, not at the end.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .assumed import SESSION_USABLE, USABLE, merged, rests_on
from .costs import cost, tagging
from .fits import Fit, fits_of
from .platforms import Platform, as_platform, mfu_constant, precision_on


@dataclass
class Plan:
    """Every fit of a run on one platform, and the run's totals."""

    platform: Platform
    precision: str
    fits: list[Fit]
    hours: float
    disk_gb: float                 # the most the run has on disk at once: run folder and cache
    folders_gb: dict               # kept at the end: run (checkpoints), cache
    disks_gb: dict                 # the most at once on each disk: run (with the cache unless it has its own), cache
    sessions: int                  # platform sessions the hours take (resumed between them); 0: no limit
    settings: dict = field(default_factory=dict)   # what adapt/preset changed, as --set KEY=VALUE
    notes: list = field(default_factory=list)
    tagging: dict = field(default_factory=dict)    # costs.tagging: a catalogue tagged with the run's predictor

    def to_json(self) -> dict:
        def rounded(d):
            return {k: round(v, 2) for k, v in d.items()}

        return {"platform": asdict(self.platform), "precision": self.precision,
                "fits": [f.public() for f in self.fits], "disk_gb": round(self.disk_gb, 2),
                "hours": round(self.hours, 2), "folders_gb": rounded(self.folders_gb),
                "disks_gb": rounded(self.disks_gb), "sessions": self.sessions, "settings": self.settings,
                "notes": self.notes, "provenance": self.provenance(), "tagging": self.tagging}

    def provenance(self) -> dict:
        """What the run's totals rest on: everything their fits' figures do (`Fit.provenance`), and the assumed
        share of a session that trains for `sessions`."""
        of = {name: merged(*(f.provenance[name] for f in self.fits if name in f.provenance))
              for name in ("gpu_memory_gb", "host_ram_gb", "disk_gb", "hours")}
        return {"hours": of["hours"], "sessions": merged(of["hours"], rests_on(None, "SESSION_USABLE")),
                "disk_gb": of["disk_gb"], "folders_gb": of["disk_gb"], "disks_gb": of["disk_gb"],
                "platform.mfu": rests_on(None, mfu_constant(self.platform)),
                "problems": merged(of["gpu_memory_gb"], of["host_ram_gb"], of["disk_gb"], rests_on(None, "USABLE"))}


def cache_apart(cfg, platform: Platform) -> bool:
    """Whether the cache sits on a disk of its own (the platform's cache folder)."""
    return bool(platform.cache_disk_gb and platform.cache_dir and cfg.cache_dir and
                Path(cfg.cache_dir) == Path(platform.cache_dir))


def _disk_peaks(fits: list[Fit], apart: bool) -> dict[str, float]:
    """The most each disk holds at once, fit by fit in run order: what earlier fits kept plus this fit's own."""
    peaks, kept = {"run": 0.0, "cache": 0.0}, {"run": 0.0, "cache": 0.0}
    for fit in fits:
        disk = "cache" if fit.folder == "cache" and apart else "run"
        peaks[disk] = max(peaks[disk], kept[disk] + fit.disk_gb)
        kept[disk] += fit.kept_gb
    return peaks


def make_plan(cfg, platform: Platform | str | None = None) -> Plan:
    """What each fit of `cfg` needs on `platform` (a Platform, a preset's name, or None: cfg.platform, else the
    GPU found here), as configured: `adapt` first for what a run would do."""
    platform = as_platform(platform, cfg)
    fits = [cost(fit, cfg, platform) for fit in fits_of(cfg)]
    folders = {name: sum(f.kept_gb for f in fits if f.folder == name) for name in ("run", "cache")}
    disks = _disk_peaks(fits, cache_apart(cfg, platform))
    hours = sum(f.hours for f in fits)
    sessions = math.ceil(hours / (platform.session_hours * SESSION_USABLE)) if platform.session_hours else 0
    notes = [] if not platform.disk_note else [platform.disk_note]
    if platform.quota_hours and hours > platform.quota_hours:
        notes.append(f"{hours:.1f} h is more than the platform's {platform.quota_hours:.0f} GPU hours a week: the run "
                     f"resumes in the next week")
    return Plan(platform, precision_on(cfg, platform), fits, hours, sum(disks.values()), folders, disks, sessions,
                notes=notes, tagging=tagging(cfg, platform))


def usable(platform: Platform) -> dict[str, float]:
    """What a plan may fill: GPU memory per card, host RAM, each disk (USABLE of each)."""
    return {"gpu": platform.gpu_memory_gb * USABLE, "ram": platform.host_ram_gb * USABLE,
            "run": platform.disk_gb * USABLE, "cache": (platform.cache_disk_gb or platform.disk_gb) * USABLE}


def overflows(plan: Plan) -> list[tuple[Fit | None, str, float, float]]:
    """(fit, resource, needed, available) for everything over the platform's limits (fit None: the run's disk at
    its fullest); resource: gpu, ram, run (the run folder's disk) or cache (the cache's own disk)."""
    limit, out = usable(plan.platform), []
    for fit in plan.fits:
        if plan.platform.gpus and fit.gpu_memory_gb > limit["gpu"]:
            out.append((fit, "gpu", fit.gpu_memory_gb, limit["gpu"]))
        if fit.host_ram_gb > limit["ram"]:
            out.append((fit, "ram", fit.host_ram_gb, limit["ram"]))
    out += [(None, disk, peak, limit[disk]) for disk, peak in plan.disks_gb.items() if peak > limit[disk]]
    return out

