"""Atomic writes: an artifact is either complete or absent, never half-written after a crash."""
import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class DiskFull(OSError):
    """A write stopped because its disk is full: names the folder and the way out, nothing left half-written."""


def amount(gb: float) -> str:
    """A disk amount people can read at any scale: GB from 1 GB, else MB."""
    return f"{gb:.1f} GB" if gb >= 1 else f"{gb * 1024:.0f} MB" if gb * 1024 >= 1 else f"{gb * 2**20:.0f} KB"


def disk_full(path, exc: OSError) -> DiskFull:
    """The clear form of ENOSPC for `path`: the folder, its free space, and what to do."""
    import shutil

    folder = Path(path).parent
    free = shutil.disk_usage(folder).free / 2**30 if folder.exists() else 0.0
    return DiskFull(errno.ENOSPC, f"{folder}: the disk is full while writing {Path(path).name} ({amount(free)} free). "
                                  f"`python -m utils.plan` shows what the run needs where; free space there, or move "
                                  f"the run with --output-dir or the cache with --cache-dir, and rerun the same "
                                  f"command: finished work is kept ({exc.strerror})")


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds. A full disk stops
    it with DiskFull naming the folder (the temporary file removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the artifact gets the mode any new file gets
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not isinstance(exc, DiskFull):
            raise disk_full(path, exc) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(df, path, **kwargs):
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, encoding="utf-8", **kwargs)
    return Path(path)


def write_json(obj, path):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=2, default=_jsonable)
    return Path(path)


class DamagedFile(ValueError):
    """A file that exists but cannot be read (truncated, zero bytes, from another version): named with its path."""


def read_json(path, default=None):
    """The file's JSON; `default` when it does not exist; DamagedFile naming it when it cannot be read."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedFile(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None


def save_model(obj, path) -> Path:
    """A scikit-learn model (a TF-IDF unit, the keyword model) as a pickle, written atomically: Python's C
    unpickler reads it ten times faster than joblib's pure-Python one (0.01 against 0.14 s per TF-IDF unit), which
    a predictor pays for every unit at every start."""
    import pickle

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh, protocol=5)
    return Path(path)


def load_model(path):
    """A model `save_model` wrote (`.pkl`), or joblib's format (`.joblib`); DamagedFile naming the file when it
    is truncated, damaged or from another version."""
    import pickle

    try:
        if Path(path).suffix == ".joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways (IndexError, struct.error, TypeError, ...)
        raise DamagedFile(f"{path}: cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None


def load_torch(path, weights_only: bool = True, mmap: bool = False):
    """`torch.load` to the CPU (`mmap`: tensors read from the file as they are used, not all at once: a fusion
    model's last.pt is 7 GB); DamagedFile naming the file when it is truncated, empty or not a checkpoint."""
    import pickle
    import zipfile

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise DamagedFile(f"{path}: cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None


def save_figure(fig, path, dpi=110):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    return Path(path)


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
