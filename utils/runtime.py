"""Seeding and the device: what every process does first, apart from any run's configuration."""
from __future__ import annotations

import os
import platform
import random

import numpy as np


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
        deterministic()
    except ImportError:
        pass


def deterministic() -> None:
    """Deterministic kernels where torch has them (a warning where it has not), in the notebook's process and in
    the processes it spawns (K-fold workers, data-parallel ranks), so that one process and several give the same
    numbers; cuBLAS needs its workspace fixed for that before its first call (PyTorch's reproducibility notes)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class DeviceError(RuntimeError):
    """The configuration asks for a GPU that this machine cannot give; the message says why and what to do."""


def why_no_cuda() -> str:
    """Why torch sees no CUDA GPU here, in words a Colab or Kaggle user can act on."""
    import shutil

    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if shutil.which("nvidia-smi"):
        return (f"an NVIDIA driver is installed but torch {torch.__version__} (built for CUDA {torch.version.cuda}) "
                f"cannot use it: the driver is probably older than that CUDA needs (nvidia-smi prints the highest "
                f"CUDA version the driver supports); install a torch build for it or update the driver")
    return "no NVIDIA GPU or driver is present (on Colab: Runtime > Change runtime type > T4 GPU; on Kaggle: " \
           "Settings > Accelerator > GPU T4 x2)"


def require_device(cfg) -> None:
    """Refuse, before anything runs, a GPU run on a machine without CUDA: the full profile (`device=auto`) would
    otherwise train RoBERTa-large and ViT-L on the CPU for days without a word. `--set device=cpu` asks for it."""
    import torch

    wants_gpu = str(cfg.device).startswith("cuda") or (cfg.device == "auto" and cfg.profile == "full")
    if wants_gpu and not torch.cuda.is_available():
        raise DeviceError(f"profile {cfg.profile!r} with device={cfg.device!r} needs a CUDA GPU, and CUDA is "
                          f"unavailable: {why_no_cuda()}. To run it on the CPU anyway (days at the real size), "
                          f"pass --set device=cpu")


def machine_description() -> str:
    """The machine in a line, with the vector instructions torch's CPU kernels use (AVX2, AVX512, ...): two CPUs
    of one model name can differ there, and so do their timings and the last bits of their sums."""
    import torch

    cpu = (f"{platform.processor() or platform.machine()} ({torch.backends.cpu.get_cpu_capability()}), "
           f"{os.cpu_count()} logical cores, torch {torch.__version__}")
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}; CPU {cpu}"
    return f"CPU only: {cpu}"


PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_ANNOUNCED: set = set()


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX: AMD Zen 4, Intel Sapphire Rapids and
    later); elsewhere torch emulates bf16, slower than fp32."""
    import torch

    return any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                       "_is_amx_tile_supported"))


def choose_precision(device: str, precision: str = "auto", capability: tuple[int, int] | None = None) -> str:
    """Mixed precision from the hardware: bf16 where the GPU computes it natively (compute capability 8.0 or
    higher: A100, H100, L4), fp16 with loss scaling on older GPUs (Colab's and Kaggle's T4, P100, V100, where
    `is_bf16_supported()` may report emulated bf16 that runs at fp32 speed), fp32 on the CPU. An explicit
    `precision` wins; `capability` is for tests (default: the current GPU's)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if not str(device).startswith("cuda"):
        return "fp32"
    import torch

    major, _ = capability or torch.cuda.get_device_capability(torch.device(device))  # this GPU, not the first
    return "bf16" if major >= 8 else "fp16"


def announce_precision(device: str, precision: str) -> None:
    """Say once per process which precision runs where (a notebook trains a dozen models)."""
    if (device, precision) not in _ANNOUNCED:
        _ANNOUNCED.add((device, precision))
        note = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with loss scaling (GradScaler)", "fp32": "fp32"}
        print(f"precision on {device}: {note[precision]}")


def half_dtype(precision: str):
    """The torch dtype of a half precision ("bf16", "fp16"); None for fp32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def autocast(device: str, precision: str):
    """Autocast to the precision's half type on the device's own kind (torch runs bf16 and fp16 on the CPU too,
    so the tests take the GPU's branch); fp32: off."""
    import torch

    kind, dtype = torch.device(device).type, half_dtype(precision)
    return torch.autocast(kind, dtype=dtype) if dtype is not None else torch.autocast(kind, enabled=False)
