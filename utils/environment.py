"""What a Colab or Kaggle Python lacks of requirements.txt, for run_all.sh's set-up there.

    python -m utils.environment            # prints the requirement lines not satisfied (nothing: all are)

Those platforms bring their own CUDA build of torch and torchvision (a pinned CPU/CUDA pair would replace it),
so those and the development-only tools are not asked for; every other line is checked against its version
range (albumentations 2.x, for one, changed the API 1.x had), not only for presence.
"""
from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

PLATFORM_OWN = {"torch", "torchvision", "jupyterlab", "pytest", "pytest-xdist", "scikit-image"}


def unmet(requirements_file, skip=PLATFORM_OWN) -> list[str]:
    """The requirement lines whose package is missing or outside the line's version range."""
    from packaging.requirements import Requirement

    out = []
    for line in Path(requirements_file).read_text().splitlines():
        text = line.split("#")[0].strip()
        if not text:
            continue
        req = Requirement(text)
        if req.name.lower() in skip:
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(text)
    return out


def main(argv=None) -> int:
    root = Path(__file__).resolve().parent.parent
    for line in unmet(root / "requirements.txt"):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
