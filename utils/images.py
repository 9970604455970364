"""Images: tolerant loading (truncated, CMYK, grayscale, 16-bit, PNG named .jpg, huge) and their sizes."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

ImageFile.LOAD_TRUNCATED_IMAGES = True  # the real data holds a few truncated JPEGs; decode what is there
MAX_IMAGE_SIDE = 4096  # larger images are reduced while decoding (a 12000 px PNG would take over a gigabyte)
Image.MAX_IMAGE_PIXELS = 400_000_000  # a huge photo is reduced, not refused; PIL's default warns at 89 MP
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with the full range kept: `convert("RGB")` clips 16-bit and 32-bit pixels (a 0–65535 gradient comes
    out almost all white), so high-bit-depth images are rescaled to 8 bits first."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        if img.mode == "F":
            top = max(float(array.max()), 1e-12) if array.max() > 1 else 1.0
        img = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def _open_reduced(img: Image.Image, size: int | None) -> Image.Image:
    """Decode at reduced scale where the format allows (JPEG draft), then shrink anything still over the limit."""
    target = size or MAX_IMAGE_SIDE
    if img.format == "JPEG":
        img.draft("RGB", (target, target))
    img = ImageOps.exif_transpose(img)
    factor = -(-max(img.size) // MAX_IMAGE_SIDE)  # ceiling: the result is at most MAX_IMAGE_SIDE
    if factor >= 2:
        img = img.reduce(factor)
    return img


def no_photo(path) -> bool:
    """Whether an image file value means "no photo": None or "" (an empty img_path), or NaN once pandas held it."""
    return path is None or (isinstance(path, float) and path != path) or (isinstance(path, str) and not path.strip())


def load_image(path, size: int | None = None) -> Image.Image | None:
    """Open any decodable image as RGB; `size` lets JPEG decode at reduced scale (much faster). None for a
    place without a photo (an empty img_path)."""
    if no_photo(path):
        return None
    with Image.open(path) as img:
        return _to_rgb(_open_reduced(img, size))


def probe_image(path) -> str | None:
    """None when the image decodes, else why not (used by validation to list every bad file). Only regular
    files are opened: a FIFO or device would block."""
    path = Path(path)
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))
            img.load()
        return None
    except Exception as exc:  # PIL raises many types for undecodable data
        return f"cannot be decoded ({type(exc).__name__}: {exc})"


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def image_sizes(frame, split: str):
    """Width and height of every image of a split (header only, no decoding); rows without a photo are left out."""
    import pandas as pd

    frame = frame[frame["image_file"].notna()]
    sizes = [image_size(p) for p in frame["image_file"]]
    return pd.DataFrame({"id": frame["id"].to_numpy(), "split": split,
                         "width": [s[0] for s in sizes], "height": [s[1] for s in sizes]})
