"""The one path from rows (a text and a photo each) to a model's input batch, for training, the feature cache and
the predictor alike.

`Places` reads rows and `collate` makes their batch: tokens padded to the batch's longest text, `text_present`,
photos as uint8 (a quarter of float32's bytes across process boundaries), `image_present` and the encoder's
normalisation, which `to_device` applies on the device. A place without a photo is zeros that the models mask
out; the rule for a row lacking every input its model reads is `features.uninformed`. `rows.RawRows` adds
labels and augmentation for training; `features.encoder_states` makes the cached encoder inputs of a batch.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .backbones import preprocessing
from .images import load_image, no_photo


def image_uint8(photo, size: int) -> torch.Tensor:
    """(3, size, size) uint8: RGB, square resize. `photo` is a file, a PIL image (an upload, an augmented copy)
    or None for a place without one (zeros)."""
    if no_photo(photo):
        return torch.zeros(3, size, size, dtype=torch.uint8)
    img = (photo.convert("RGB") if hasattr(photo, "convert") else load_image(photo, size=size)).resize((size, size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())


def normalise_pixels(pixels: torch.Tensor, mean, std, present: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (B, 3, H, W) or (3, H, W) as the encoder's normalised float32 input; an item without a photo
    (`present` False) becomes zeros (the mean colour), a placeholder that the models mask out."""
    stats = [torch.as_tensor(v, dtype=torch.float32, device=pixels.device).view(3, 1, 1) for v in (mean, std)]
    out = (pixels.float() / 255.0 - stats[0]) / stats[1]
    if present is not None:
        out = out * present.to(out.device, out.dtype).view(-1, *([1] * (out.dim() - 1)))
    return out


def to_device(batch: dict, device) -> dict:
    """A batch on `device`, its uint8 pixels (`pixel_stats` holds their mean and std) normalised there."""
    out = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    stats = out.pop("pixel_stats", None)
    if stats is not None and out["pixels"].dtype == torch.uint8:
        out["pixels"] = normalise_pixels(out["pixels"], stats[0], stats[1], out.get("image_present"))
    return out


def image_tensor(photo, size: int, mean, std) -> torch.Tensor:
    """One photo as a model input (zeros for none): what a batch holds for it, for Grad-CAM of a single image."""
    if no_photo(photo):
        return torch.zeros(3, size, size)
    return normalise_pixels(image_uint8(photo, size), mean, std)


def loader_workers(cfg, device: str) -> int:
    """`num_workers`, or for -1: on a GPU the cores of this process's share of the machine less one (decoding
    and augmenting 384 px photos takes several cores per A100 or H100: four workers starved them), none on
    the CPU, where workers would take the cores the model trains on."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    if not str(device).startswith("cuda"):
        return 0
    from .distributed import processes_for

    return max(1, (os.cpu_count() or 1) // processes_for(cfg) - 1)


def batches_of(n_rows: int, batch_size: int) -> list[np.ndarray]:
    """Consecutive groups of row positions: the batches of a pass over every row in order."""
    return [np.arange(start, min(start + batch_size, n_rows)) for start in range(0, n_rows, batch_size)]


class Places(Dataset):
    """Rows as the models read them: `texts` and `photos` (files, PIL images or None; a list may be None where
    none is given), of which `modalities` are read. An item is decoded when its batch is drawn, in loader worker
    processes on a GPU (`loader_workers`)."""

    def __init__(self, cfg, texts, photos, modalities=("text", "image")):
        given = {"text": texts is not None, "image": photos is not None}
        self.cfg, self.modalities = cfg, tuple(m for m in modalities if given[m])  # none read that is not given
        self.texts = list(texts) if texts is not None else None
        self.photos = [None if no_photo(p) else p for p in photos] if photos is not None else None
        self.text = preprocessing("text", cfg) if "text" in self.modalities else None
        self.image = preprocessing("image", cfg) if "image" in self.modalities else None

    def __len__(self):
        return len(self.texts if self.texts is not None else self.photos)

    def draws(self, i):
        """The random generator of item `i`'s augmentation; none here (rows.RawRows augments)."""
        return None

    def text_of(self, i, rng) -> str:
        return self.texts[i]

    def photo_of(self, i, rng):
        """Item `i`'s photo decoded (a PIL image, or None)."""
        photo = self.photos[i]
        return photo if photo is None or hasattr(photo, "convert") else load_image(photo, size=self.cfg.image_size)

    def __getitem__(self, i):
        rng, item = self.draws(i), {}
        if self.texts is not None:
            item["text_present"] = bool(self.texts[i])
        if self.photos is not None:
            item["image_present"] = self.photos[i] is not None
        if self.text is not None:
            item["text"] = self.text_of(i, rng)
        if self.image is not None:
            item["pixels"] = image_uint8(self.photo_of(i, rng), self.cfg.image_size)
        return item

    def collate(self, items: list[dict]) -> dict:
        """The batch: which items have a text and a photo (whether or not read), the tokens and pixels read."""
        batch = {f"{m}_present": torch.tensor([it[f"{m}_present"] for it in items])
                 for m in ("text", "image") if f"{m}_present" in items[0]}
        if self.text is not None:
            batch.update(self.text.tokenize([it["text"] for it in items], self.cfg.max_len))
        if self.image is not None:
            batch["pixels"] = torch.stack([it["pixels"] for it in items])
            batch["pixel_stats"] = torch.tensor([self.image.mean, self.image.std], dtype=torch.float32)
        return batch

    def at_epoch(self, epoch: int) -> "Places":
        """The rows as epoch `epoch` draws them (the same rows here; rows.RawRows augments per epoch)."""
        return self

    def decodes(self) -> bool:
        """Whether an item costs enough to be worth worker processes: decoding a photo does (a text's tokens, a
        batch at a time, do not: workers would only fork for them)."""
        return self.image is not None

    def loader(self, groups, device: str, epoch: int = 0, pin: bool | None = None) -> DataLoader:
        """One batch per group of row indices, in order, in worker processes where items decode (`decodes`,
        `loader_workers`; never more than batches), pinned on a GPU unless `pin` is False (batches kept on the
        host)."""
        groups = [[int(i) for i in g] for g in groups]
        workers = min(loader_workers(self.cfg, device), len(groups)) if self.decodes() else 0
        view = self.at_epoch(epoch)
        pin = str(device).startswith("cuda") if pin is None else pin
        return DataLoader(view, batch_sampler=groups, num_workers=workers, pin_memory=pin, collate_fn=view.collate,
                          prefetch_factor=4 if workers else None)

    def __getstate__(self):
        """Sent to a spawned process (data-parallel training) without the encoders' preprocessing, which it loads
        itself; forked loader workers inherit it."""
        state = dict(self.__dict__)
        state["text"] = state["text"] is not None
        state["image"] = state["image"] is not None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.text = preprocessing("text", self.cfg) if state["text"] else None
        self.image = preprocessing("image", self.cfg) if state["image"] else None
