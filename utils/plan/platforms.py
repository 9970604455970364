"""The machines a run is planned for (PLATFORMS), the one found at run time, and what autocast runs on each.

Why a table: a run names its platform (`--set platform=NAME`) before it has the machine, so that it can refuse
or adapt before its first notebook rather than in its fourth hour.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from .assumed import GB, value


class PlanError(ValueError):
    """An architecture the plan cannot build offline, or an unknown platform."""


@dataclass(frozen=True)
class Platform:
    """A machine a run is planned for. Memory, RAM and disk as the platform states them (read as GiB)."""

    name: str
    gpu: str                 # what torch.cuda.get_device_name says contains this ("T4"); "" for none
    gpu_memory_gb: float     # per card
    gpus: int
    host_ram_gb: float
    disk_gb: float           # the disk the run folder is written to
    session_hours: float     # 0: no limit
    bf16: bool               # native bf16 (compute capability >= 8): else fp16 with loss scaling
    cpu_cores: int
    peak_tflops: float       # dense half-precision tensor-core peak per card
    mfu: float               # assumed share of that peak a fine-tune reaches (assumed.py MFU_*; gpu_check measures)
    quota_hours: float = 0.0  # GPU hours per week (Kaggle), 0: none
    budget_hours: float = 0.0  # the hours a preset trims the run to (0: none): sessions x length, or the quota
    cache_dir: str = ""      # where the content-keyed cache goes (rebuilt each session), "" = beside the runs
    cache_disk_gb: float = 0.0  # that folder's own disk, 0: the run folder's
    disk_note: str = ""


PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10": 125.0, "L4": 121.0, "V100": 125.0, "T4": 65.0,
               "P100": 18.7}  # dense fp16/bf16 tensor-core peaks (vendors' data sheets)

PLATFORMS = {
    "colab-t4": Platform("colab-t4", "T4", 15.0, 1, 12.7, 100.0, 12.0, False, 2, PEAK_TFLOPS["T4"], value("MFU_T4"),
                         budget_hours=24.0, cache_dir="/content/cache",
                         disk_note="Colab's local disk (~100 GB) is wiped when the session ends: to resume in the next "
                                   "session put the run folder on Google Drive (--output-dir /content/drive/MyDrive/"
                                   "outputs; Drive's free tier holds 15 GB); the cache stays local (/content/cache)"),
    "kaggle-2xt4": Platform("kaggle-2xt4", "T4", 15.0, 2, 30.0, 20.0, 12.0, False, 4, PEAK_TFLOPS["T4"],
                            value("MFU_T4"), quota_hours=30.0, budget_hours=30.0, cache_dir="/tmp/pipeline-cache",
                            cache_disk_gb=value("KAGGLE_CACHE_DISK_GB"),
                            disk_note="/kaggle/working holds 20 GB and is saved with the notebook's version; the cache "
                                      "goes outside it (/tmp/pipeline-cache, rebuilt each session; Kaggle states no "
                                      "size for that disk: 50 GB ASSUMED, the run checks what it finds)"),
    "a100-40": Platform("a100-40", "A100", 40.0, 1, 83.0, value("CLOUD_DISK_GB"), 0.0, True, 12, PEAK_TFLOPS["A100"],
                        value("MFU_A100"),
                        disk_note="a cloud VM like GCP's a2-highgpu-1g (12 vCPUs, 85 GB RAM); 200 GB disk assumed"),
    "h100-80": Platform("h100-80", "H100", 80.0, 1, value("H100_VM_RAM_GB"), value("CLOUD_DISK_GB"), 0.0, True,
                        value("H100_VM_CORES"), PEAK_TFLOPS["H100"], value("MFU_H100"),
                        disk_note="a single-H100 cloud VM; 16 cores, 200 GB RAM and disk assumed"),
}
MFU_OF = {"colab-t4": "MFU_T4", "kaggle-2xt4": "MFU_T4", "a100-40": "MFU_A100", "h100-80": "MFU_H100"}


def mfu_constant(platform: Platform) -> str:
    """The row of assumed.TABLE that the platform's utilisation comes from (for the JSON's provenance)."""
    return MFU_OF.get(platform.name, "MFU_DETECTED" if platform.gpus else "MFU_CPU")


def detect_platform(output_dir: str | None = None) -> Platform:
    """The machine this process runs on: its GPUs, RAM, free disk of the output folder and cores."""
    import shutil

    import torch

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    folder = Path(output_dir or paths.OUTPUTS)
    while not folder.exists():
        folder = folder.parent
    disk = shutil.disk_usage(folder).free / GB
    cores = os.cpu_count() or 1
    if not torch.cuda.is_available():
        return Platform("cpu", "", 0.0, 0, ram, disk, 0.0, False, cores, value("CPU_TFLOPS_PER_CORE") * cores,
                        value("MFU_CPU"))
    props = torch.cuda.get_device_properties(0)
    key = next((k for k in PEAK_TFLOPS if k in props.name), "")
    return Platform(f"detected ({props.name})", key or props.name, props.total_memory / GB, torch.cuda.device_count(),
                    ram, disk, 0.0, props.major >= 8, cores, PEAK_TFLOPS.get(key, value("UNKNOWN_PEAK_TFLOPS")),
                    value("MFU_DETECTED"))


def platform_named(name: str | None, output_dir: str | None = None) -> Platform:
    """A preset by name, or the machine found here for an empty name (or "detect")."""
    if not name or name == "detect":
        return detect_platform(output_dir)
    if name not in PLATFORMS:
        raise PlanError(f"unknown platform {name!r}; choose one of {', '.join(PLATFORMS)} (or leave it empty: the GPU "
                        f"found at run time)")
    return PLATFORMS[name]


def as_platform(platform, cfg) -> Platform:
    """`platform` as a Platform: itself, a preset's name, or (None) cfg.platform, else the machine found here."""
    return platform if isinstance(platform, Platform) else platform_named(platform or cfg.platform,
                                                                         cfg.output_dir or None)


def precision_on(cfg, platform: Platform) -> str:
    """What autocast runs on that platform: runtime.choose_precision for its GPU generation (native bf16 from
    compute capability 8)."""
    from ..runtime import choose_precision

    return choose_precision("cuda" if platform.gpus else "cpu", cfg.precision, (8, 0) if platform.bf16 else (7, 5))
