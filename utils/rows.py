"""The end-to-end data path: raw rows (overview text, image file) to model batches, augmented on training rows.

Nothing proportional to rows x tokens x width is held in memory: a row's text is cleaned and augmented and its
image decoded (at reduced scale where JPEG allows), augmented and normalised only when its batch is drawn; texts
are tokenized per batch, padded to the batch's longest. Augmentation touches only the rows a model trains on
(`for_training(train_idx)`, which `experiments.fit_model` calls), never validation or test rows.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .augment import augment_image, augment_text_on_the_fly, image_pipeline
from .backbones import frozen_backbone
from .data import LEVELS
from .features import all_rows, image_tensor, row_labels
from .images import load_image, no_photo


class RawRows(Dataset):
    """Train rows then test rows (the order of the cached features), with labels (-1 on test rows)."""

    soft: dict | None = None  # distillation's soft targets by row (with_soft_labels)

    def __init__(self, ds, cfg, modalities=("text", "image"), labels_frame=None):
        rows = all_rows(ds)
        self.cfg, self.modalities = cfg, tuple(modalities)
        self.texts = rows["overview"].tolist()
        self.files = [None if no_photo(f) else f for f in rows["image_file"]]
        self.labels = row_labels(ds, labels_frame)
        self.text = frozen_backbone("text", cfg) if "text" in self.modalities else None
        self.image = frozen_backbone("image", cfg) if "image" in self.modalities else None
        self.augment_rows: frozenset = frozenset()
        self.text_ops = tuple(op for op in cfg.text_augment.split(",") if op)
        self.rng = np.random.default_rng(cfg.seed)
        self.pipeline = image_pipeline(cfg.seed) if cfg.image_augment else None

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
        view.rng = np.random.default_rng([seed, rows_key])
        view.pipeline = image_pipeline(seed + rows_key) if self.cfg.image_augment else None
        return view

    def __getitem__(self, i):
        augment = int(i) in self.augment_rows
        item = {level: int(self.labels[level][i]) for level in LEVELS}
        if self.soft is not None:
            item["soft_targets"] = self.soft.get(int(i))
        if self.text is not None:
            text = self.texts[i]
            item["text"] = augment_text_on_the_fly(text, self.rng, self.text_ops) if augment and self.text_ops else text
        if self.image is not None:
            size, file = self.cfg.image_size, self.files[i]
            img = None if file is None else load_image(file, size=size)
            if augment and self.pipeline is not None and img is not None:
                img = augment_image(img, self.pipeline)
            item["pixels"] = image_tensor(img, size, self.image.mean, self.image.std)
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
        return batch

    def loader(self, groups, device: str) -> DataLoader:
        """One batch per group of row indices, in order; worker processes and pinned memory on a GPU (auto: up
        to 4 workers), none on the CPU, where workers would take the cores the model trains on."""
        workers = self.cfg.num_workers
        if workers < 0:
            import os

            workers = min(4, os.cpu_count() or 1) if str(device).startswith("cuda") else 0
        return DataLoader(self, batch_sampler=[[int(i) for i in g] for g in groups], num_workers=workers,
                          pin_memory=str(device).startswith("cuda"), collate_fn=self.collate,
                          worker_init_fn=_seed_worker if workers else None)

    def __getstate__(self):
        """Sent to a data-parallel process without the frozen encoders, which it loads itself (utils/distributed.py)."""
        state = dict(self.__dict__)
        state["text"] = state["text"] is not None
        state["image"] = state["image"] is not None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.text = frozen_backbone("text", self.cfg) if state["text"] else None
        self.image = frozen_backbone("image", self.cfg) if state["image"] else None

    def with_soft_labels(self, rows, soft: dict) -> "RawRows":
        """A view whose `rows` train on soft targets instead of labels (see training.TensorData.with_soft_labels)."""
        from .training import soft_digest

        view = self._view()
        view.soft = {int(r): {level: soft[level][i] for level in soft} for i, r in enumerate(rows)}
        view.soft_widths = {level: soft[level].shape[1] for level in soft}
        view.soft_digest = soft_digest(rows, soft)
        return view

    def _view(self) -> "RawRows":
        """A shallow copy sharing the rows, encoders and labels, for views that change what training sees."""
        view = object.__new__(RawRows)
        view.__dict__.update(self.__dict__)
        return view

    def labels_of(self, indices, level: str = "cat3") -> np.ndarray:
        return self.labels[level][np.asarray(indices)]


def _seed_worker(worker_id: int) -> None:
    """Each worker draws its own augmentations, reproducibly from the loader's seed."""
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    info.dataset.dataset.rng = np.random.default_rng(seed)
    if info.dataset.dataset.pipeline is not None:
        info.dataset.dataset.pipeline.set_random_seed(seed)
