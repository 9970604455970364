"""The end-to-end data path: raw rows (overview text, image file) to model batches, augmented on training rows.

Nothing proportional to rows x tokens x width is held in memory: a row's text is cleaned and augmented and its
image decoded (at reduced scale where JPEG allows), augmented and normalised only when its batch is drawn; texts
are tokenized per batch, padded to the batch's longest. Augmentation touches only the rows a model trains on
(`for_training(train_idx)`, which `experiments.fit_model` calls), never validation or test rows.

An item's augmentation is seeded by the view's seed, the epoch and the row: the same batches with any number of
worker processes (a GPU's default) as with none (the CPU's), and after a resume mid-epoch. Pixels
travel as uint8 and are normalised on the device (`inputs.to_device`).
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .augment import augment_image, augment_text_on_the_fly, image_pipeline, seed_pipeline
from .features import ModelData, all_rows, row_labels, soft_digest
from .inputs import Places
from .taxonomy import LEVELS


class RawRows(Places, ModelData):
    """Train rows then test rows (the order of the cached features), decoded per batch (`inputs.Places`), with
    their labels, and augmented on the rows a model trains on."""

    raw = True
    soft: dict | None = None  # distillation's soft targets by row (with_soft_labels)

    def __init__(self, ds, cfg, modalities=("text", "image"), labels_frame=None):
        rows = all_rows(ds)
        super().__init__(cfg, rows["overview"].tolist(), rows["image_file"].tolist(), modalities)
        self.n_train, self.n_test = len(ds.train), len(ds.test)
        self.labels = row_labels(ds, labels_frame)
        self.augment_rows: frozenset = frozenset()
        self.text_ops = cfg.augment_ops
        self.seed_key = (cfg.seed,)  # with the epoch and the row, it seeds an item's augmentation
        self.pipeline = image_pipeline(cfg.seed) if cfg.image_augment else None
        self.draw_key = (*self.seed_key, 0)  # set per loader (`loader`)

    def for_training(self, train_idx, seed: int = 0) -> "RawRows":
        """A view of the same rows whose augmentation applies to `train_idx` only, drawn from its own generators
        seeded by `seed` and the rows: a K-fold unit's augmentations never depend on which units ran before it in
        the same process, so one process and several give the same units."""
        view = self._view()
        view.augment_rows = frozenset(int(i) for i in train_idx)
        rows_key = zlib.crc32(np.asarray(train_idx, dtype=np.int64).tobytes())
        view.seed_key = (seed, rows_key)
        view.pipeline = image_pipeline(seed + rows_key) if self.cfg.image_augment else None
        return view

    def at_epoch(self, epoch: int) -> "RawRows":
        """A view drawing epoch `epoch`'s augmentations: with the row, the epoch seeds each item's draws."""
        view = self._view()
        view.draw_key = (*self.seed_key, epoch)
        return view

    def decodes(self) -> bool:
        """Photos, and texts augmented on the fly (a morphological analysis per text), are worth workers."""
        return super().decodes() or bool(self.text is not None and self.text_ops and self.augment_rows)

    def draws(self, i):
        return np.random.default_rng([*self.draw_key, int(i)]) if int(i) in self.augment_rows else None

    def text_of(self, i, rng) -> str:
        text = self.texts[i]
        return augment_text_on_the_fly(text, rng, self.text_ops) if rng is not None and self.text_ops else text

    def photo_of(self, i, rng):
        img = super().photo_of(i, rng)
        if rng is not None and self.pipeline is not None and img is not None:
            seed_pipeline(self.pipeline, int(rng.integers(2**31)))
            img = augment_image(img, self.pipeline)
        return img

    def __getitem__(self, i):
        item = {**super().__getitem__(i), **{level: int(self.labels[level][i]) for level in LEVELS}}
        if self.soft is not None:
            item["soft_targets"] = self.soft.get(int(i))
        return item

    def collate(self, items: list[dict]) -> dict:
        batch = {**super().collate(items), **{level: torch.tensor([it[level] for it in items]) for level in LEVELS}}
        if self.soft is not None:
            batch["soft"] = torch.tensor([it["soft_targets"] is not None for it in items])
            for level in LEVELS:
                batch[f"soft_{level}"] = torch.stack([torch.as_tensor(it["soft_targets"][level], dtype=torch.float32)
                                                      if it["soft_targets"] is not None
                                                      else torch.zeros(self.soft_widths[level]) for it in items])
        return batch

    def with_soft_labels(self, rows, soft: dict) -> "RawRows":
        """A view whose `rows` train on soft targets instead of labels (features.ModelData)."""
        view = self._view()
        view.soft = {int(r): {level: soft[level][i] for level in soft} for i, r in enumerate(rows)}
        view.soft_widths = {level: soft[level].shape[1] for level in soft}
        view.soft_digest = soft_digest(rows, soft)
        return view

    def _view(self) -> "RawRows":
        """A shallow copy sharing the rows, encoders and labels, for views that change what training sees."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        return view

    def labels_of(self, indices, level: str = "cat3") -> np.ndarray:
        return self.labels[level][np.asarray(indices)]

    def photo_rows(self) -> np.ndarray:
        return np.array([p is not None for p in self.photos])
