"""Images: tolerant loading (truncated, CMYK, grayscale, PNG named .jpg) and augmentation pipelines."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFile, ImageOps

ImageFile.LOAD_TRUNCATED_IMAGES = True  # the real data holds a few truncated JPEGs; decode what is there


def load_image(path, size: int | None = None) -> Image.Image:
    """Open any decodable image as RGB; `size` lets JPEG decode at reduced scale (much faster)."""
    with Image.open(path) as img:
        if size:
            img.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def probe_image(path) -> str | None:
    """None when the image decodes, else why not (used by validation to list every bad file)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))
            img.load()
        return None
    except FileNotFoundError:
        return "file not found"
    except Exception as exc:  # PIL raises many types for undecodable data
        return f"cannot be decoded ({type(exc).__name__}: {exc})"


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def image_sizes(frame, split: str):
    """Width and height of every image of a split (header only, no decoding)."""
    import pandas as pd

    sizes = [image_size(p) for p in frame["image_file"]]
    return pd.DataFrame({"id": frame["id"].to_numpy(), "split": split,
                         "width": [s[0] for s in sizes], "height": [s[1] for s in sizes]})
