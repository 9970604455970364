"""The end-to-end data path: raw rows (overview text, image file) to model batches, augmented on training rows.

Nothing proportional to rows x tokens x width is held in memory: a row's text is cleaned and augmented and its
image decoded (at reduced scale where JPEG allows), augmented and normalised only when its batch is drawn; texts
are tokenized per batch, padded to the batch's longest. Augmentation touches only the rows a model trains on
(`for_training(train_idx)`, which `experiments.fit_model` calls), never validation or test rows.

An item's augmentation is seeded by the view's seed, the epoch and the row: the same batches with any number of
worker processes (a GPU's default) as with none (the CPU's), and after a resume mid-epoch. Pixels
travel as uint8 and are normalised on the device (`to_device`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .augment import augment_image, augment_text_on_the_fly, image_pipeline, seed_pipeline
from .backbones import preprocessing
from .features import ModelData, all_rows, image_uint8, row_labels, soft_digest
from .images import load_image, no_photo
from .taxonomy import LEVELS


class RawRows(ModelData):
    """Train rows then test rows (the order of the cached features), decoded per batch."""

    raw = True
    soft: dict | None = None  # distillation's soft targets by row (with_soft_labels)

    def __init__(self, ds, cfg, modalities=("text", "image"), labels_frame=None):
        rows = all_rows(ds)
        self.n_train, self.n_test = len(ds.train), len(ds.test)
        self.cfg, self.modalities = cfg, tuple(modalities)
        self.texts = rows["overview"].tolist()
        self.files = [None if no_photo(f) else f for f in rows["image_file"]]
        self.labels = row_labels(ds, labels_frame)
        self.text = preprocessing("text", cfg) if "text" in self.modalities else None
        self.image = preprocessing("image", cfg) if "image" in self.modalities else None
        self.augment_rows: frozenset = frozenset()
        self.text_ops = tuple(op for op in cfg.text_augment.split(",") if op)
        self.seed_key = (cfg.seed,)  # with the epoch and the row, it seeds an item's augmentation
        self.pipeline = image_pipeline(cfg.seed) if cfg.image_augment else None
        self.draw_key = (*self.seed_key, 0)  # set per loader (`loader`)

    def __len__(self):
        return len(self.texts)

    def for_training(self, train_idx, seed: int = 0) -> "RawRows":
        """A view of the same rows whose augmentation applies to `train_idx` only, drawn from its own generators
        seeded by `seed` and the rows: a K-fold unit's augmentations never depend on which units ran before it in
        the same process, so one process and several give the same units."""
        import zlib

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

    def __getitem__(self, i):
        augment = int(i) in self.augment_rows
        rng = np.random.default_rng([*self.draw_key, int(i)]) if augment else None
        item = {level: int(self.labels[level][i]) for level in LEVELS}
        if self.soft is not None:
            item["soft_targets"] = self.soft.get(int(i))
        if self.text is not None:
            text = self.texts[i]
            item["text"] = augment_text_on_the_fly(text, rng, self.text_ops) if augment and self.text_ops else text
        if self.image is not None:
            size, file = self.cfg.image_size, self.files[i]
            img = None if file is None else load_image(file, size=size)
            if augment and self.pipeline is not None and img is not None:
                seed_pipeline(self.pipeline, int(rng.integers(2**31)))
                img = augment_image(img, self.pipeline)
            item["pixels"] = image_uint8(img, size)
            item["image_present"] = file is not None
        return item

    def collate(self, items: list[dict]) -> dict:
        batch = {level: torch.tensor([it[level] for it in items]) for level in LEVELS}
        if self.soft is not None:
            batch["soft"] = torch.tensor([it["soft_targets"] is not None for it in items])
            for level in LEVELS:
                batch[f"soft_{level}"] = torch.stack([torch.as_tensor(it["soft_targets"][level], dtype=torch.float32)
                                                      if it["soft_targets"] is not None
                                                      else torch.zeros(self.soft_widths[level]) for it in items])
        if self.text is not None:
            batch.update(self.text.tokenize([it["text"] for it in items], self.cfg.max_len))
        if self.image is not None:
            batch["pixels"] = torch.stack([it["pixels"] for it in items])
            batch["image_present"] = torch.tensor([it["image_present"] for it in items])
            batch["pixel_stats"] = torch.tensor([self.image.mean, self.image.std], dtype=torch.float32)
        return batch

    def loader(self, groups, device: str, epoch: int = 0) -> DataLoader:
        """One batch per group of row indices, in order, in worker processes (`loader_workers`), pinned on a GPU."""
        workers = loader_workers(self.cfg, device)
        view = self.at_epoch(epoch)
        return DataLoader(view, batch_sampler=[[int(i) for i in g] for g in groups], num_workers=workers,
                          pin_memory=str(device).startswith("cuda"), collate_fn=view.collate,
                          prefetch_factor=4 if workers else None)

    def __getstate__(self):
        """Sent to a data-parallel process without the frozen encoders, which it loads itself (utils/distributed.py)."""
        state = dict(self.__dict__)
        state["text"] = state["text"] is not None
        state["image"] = state["image"] is not None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.text = preprocessing("text", self.cfg) if state["text"] else None
        self.image = preprocessing("image", self.cfg) if state["image"] else None

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
        return np.array([f is not None for f in self.files])


def loader_workers(cfg, device: str) -> int:
    """`num_workers`, or for -1: on a GPU the cores of this process's share of the machine less one (decoding
    and augmenting 384 px photos takes several cores per A100 or H100: four workers starved them), none on
    the CPU, where workers would take the cores the model trains on."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    if not str(device).startswith("cuda"):
        return 0
    import os

    from .distributed import processes_for

    return max(1, (os.cpu_count() or 1) // processes_for(cfg) - 1)
