"""Progress bars that behave under papermill.

run_all.sh and the tests set PIPELINE_QUIET_BARS=1: per-batch bars are then hidden (the training
loop prints one line per epoch instead) and outer bars update every TQDM_MININTERVAL seconds, so an
executed notebook holds a few lines per loop, not thousands. In Jupyter every bar shows.
"""
import os

from tqdm import tqdm


def bar(iterable=None, desc: str = "", total: int | None = None, inner: bool = False, disable: bool = False,
        initial: int = 0, **options):
    """`options`: tqdm's own (unit, smoothing, ...)."""
    quiet = os.environ.get("PIPELINE_QUIET_BARS") == "1"
    return tqdm(iterable, desc=desc, total=total, leave=not inner, disable=disable or (inner and quiet), initial=initial,
                **options)
