"""Encoder states computed once per dataset and cached on disk, so that CPU runs train only what they must.

For text, two tensors per row: the states *below* the top `top_layers` layers (what a partial fine-tune
trains on) and the final states (what frozen-encoder models read). Images likewise: the feature map
below the top `top_stages` stages and the final feature map as tokens. Entries are keyed by the content
of the dataset's CSVs and images, the encoder and its settings; each is written in resumable chunks into
memory-mapped files under the cache folder and read memory-mapped (RAM does not grow with the dataset).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import kinds
from .backbones import frozen_backbone, loaded_frozen
from .config import STAGES
from .inputs import Places, batches_of, to_device
from .io import DamagedFile, disk_full, read_json, write_json
from .models import POOLED, ImageTower, TextTower
from .progress import bar
from .runtime import autocast, choose_precision, pick_device
from .taxonomy import LEVELS


def _file_digest(path: Path, memo: dict) -> str:
    """sha1 of a file's bytes, memoised by (path, size, mtime, ctime): any write to a file moves its ctime (which,
    unlike mtime, no tool can set back), so an edit in place is always seen, and an unchanged dataset is
    fingerprinted without reading every image again."""
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    if key not in memo:
        memo[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return memo[key]


def _file_digests(files, cache_dir) -> list[str]:
    """`_file_digest` of each file, with the memo kept in <cache>/file_digests.json."""
    memo_path = Path(cache_dir) / "file_digests.json"
    try:
        memo = read_json(memo_path, default={})
    except DamagedFile:
        memo = {}  # a memo only: every file is read again
    known = len(memo)
    digests = [_file_digest(Path(f), memo) for f in files]
    if len(memo) != known:
        write_json(memo, memo_path)
    return digests


def dataset_fingerprint(data_dir, cache_dir) -> str:
    """Changes whenever the CSVs or any image file's content changes (the key of every cached encoder state)."""
    data_dir = Path(data_dir)
    h = hashlib.sha1()
    for name in ("train.csv", "test.csv"):
        h.update((data_dir / name).read_bytes())
    images = [f for split in ("train", "test") for f in sorted((data_dir / "image" / split).glob("*")) if f.is_file()]
    for f, digest in zip(images, _file_digests(images, cache_dir)):
        h.update(f"{f.name}:{digest}".encode())
    return h.hexdigest()[:12]


CHUNK_ROWS = 1024  # rows encoded per resumable unit of a caching pass


def _load_cached(folder: Path) -> dict:
    """A finished cache entry: its arrays memory-mapped (copy-on-write, so torch may wrap them; the file never
    changes), so training reads only the rows of each batch and RAM does not grow with rows x tokens x width."""
    meta = read_json(folder / "meta.json")
    arrays = {name: torch.from_numpy(np.load(folder / f"{name}.npy", mmap_mode="c")) for name in meta["arrays"]}
    return {**meta["extra"], **arrays}


def cached_arrays(folder: Path, n_rows: int, encode_rows, extra: dict, desc: str, chunk_rows: int = CHUNK_ROWS) -> dict:
    """`encode_rows(start, stop)` -> {name: array of stop - start rows} over `n_rows` rows, computed chunk by chunk
    into memory-mapped .npy files, each finished chunk recorded, so that an interrupted pass resumes where it
    stopped. The entry appears complete (renamed from `<folder>.partial`) or not at all; `extra` (ids, model
    name) is stored beside the arrays."""
    folder = Path(folder)
    if (folder / "meta.json").exists():
        try:
            return _load_cached(folder)
        except (ValueError, OSError) as exc:  # a truncated array or meta.json (DamagedFile is a ValueError)
            print(f"{desc}: the cache entry {folder} cannot be read ({exc}); computing it again")
            shutil.rmtree(folder)
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    progress = partial / "chunks.json"
    try:
        done = set(read_json(progress, default=[]))
    except DamagedFile:
        done = set()  # which chunks finished is unknown: all are computed again
    starts = list(range(0, n_rows, chunk_rows))
    if done:
        print(f"{desc}: resuming, {len(done)} of {len(starts)} chunks already in {partial}")
    arrays: dict[str, np.ndarray] = {}
    for index in bar([i for i in range(len(starts)) if i not in done], desc):
        start = starts[index]
        values = encode_rows(start, min(start + chunk_rows, n_rows))
        for name, value in values.items():
            value = value.numpy() if torch.is_tensor(value) else np.asarray(value)
            if name not in arrays:
                path = partial / f"{name}.npy"
                arrays[name] = np.load(path, mmap_mode="r+") if path.exists() else _new_array(path, value, n_rows)
            arrays[name][start:start + len(value)] = value
            arrays[name].flush()
        done.add(index)
        write_json(sorted(done), progress)
    names = sorted(arrays) or sorted(p.stem for p in partial.glob("*.npy"))
    del arrays  # close the maps before the rename
    write_json({"arrays": names, "extra": extra, "rows": n_rows}, partial / "meta.json")
    progress.unlink()
    os.replace(partial, folder)
    return _load_cached(folder)


def _new_array(path: Path, like, n_rows: int) -> np.ndarray:
    """A memory-mapped .npy of `n_rows` rows like `like`, its blocks reserved on disk first: a write through a map
    to a full disk kills the process (SIGBUS), a reservation that does not fit raises DiskFull instead."""
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=like.dtype, shape=(n_rows, *like.shape[1:]))
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.path.getsize(path))
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without reservations: written as is
            return array
        path.unlink(missing_ok=True)
        raise disk_full(path, exc) if exc.errno == errno.ENOSPC else exc from None
    return array


def all_rows(ds):
    """Train rows then test rows: the order of every cached feature tensor."""
    import pandas as pd

    return pd.concat([ds.train[["id", "overview", "image_file"]], ds.test[["id", "overview", "image_file"]]],
                     ignore_index=True)


def cache_tower(modality: str, cfg, device):
    """The frozen encoder split as the cache stores it (states below the top layers or stages, and final)."""
    backbone = frozen_backbone(modality, cfg)
    if modality == "text":
        return TextTower(backbone, top_layers=cfg.text_top_layers, train_top=False).to(device).eval()
    tower = ImageTower(backbone, top_stages=cfg.image_top_stages, train_top=False).to(device).eval()
    tower.model.to(memory_format=torch.channels_last)
    return tower


def text_states(tower, input_ids, attention_mask) -> dict:
    """One batch's cached text inputs, exactly as stored (fp16): what cached-mode models trained on."""
    low = tower.bottom(input_ids, attention_mask)
    return {"text_bottom": low.half(), "text_final": tower.top(low, attention_mask).half(),
            "text_mask": attention_mask.bool()}


def image_states(tower, pixels) -> dict:
    """One batch's cached image inputs, exactly as stored (fp16); channels-last makes the depthwise convolutions
    1.6x faster on CPU (measured)."""
    low = tower.bottom(pixels.to(memory_format=torch.channels_last))
    return {"image_bottom": low.half().contiguous(), "image_final": tower.top(low).half().contiguous()}


def encoder_states(towers: dict, batch: dict, keys=()) -> dict:
    """A batch's cached encoder inputs (`towers`: `cache_tower` per modality; `batch`: an `inputs.Places` batch
    on the towers' device), and of `keys` the pooled vectors made of them: what the cache stores for a row and
    what the predictor gives a cached-mode model for a new place."""
    out = {}
    if "text" in towers:
        out.update(text_states(towers["text"], batch["input_ids"], batch["attention_mask"]))
    if "image" in towers:
        out.update(image_states(towers["image"], batch["pixels"]))
    return {**out, **model_inputs(out, keys)}


def caching_precision(cfg) -> str:
    """The precision the caching pass computes in (the run's: half on a GPU, fp32 on the CPU); its cache entries
    are named by it."""
    return choose_precision(pick_device(cfg.device), cfg.precision)


def _encode(modality: str, places: Places, cfg, batch_size: int, model_name: str):
    """(row positions, encoder states) per batch of `places`, in the run's precision (half on a GPU: the cache
    stores fp16 anyway)."""
    device = pick_device(cfg.device)
    towers = {modality: cache_tower(modality, cfg, device)}
    groups = batches_of(len(places), batch_size)
    with torch.inference_mode(), autocast(device, caching_precision(cfg)):
        for group, batch in zip(groups, bar(places.loader(groups, device), f"encoding {modality}s ({model_name})",
                                            len(groups), inner=True)):
            yield group, encoder_states(towers, to_device(batch, device))


def encode_texts(texts, cfg, batch_size: int = 16) -> dict:
    """Frozen text encoder over `texts`: {"bottom", "final" (N, max_len, H) fp16, "mask" (N, max_len) bool}.
    Batches of 16 run about a fifth faster than 64 on the 2-core CPU (cache-sized)."""
    n, max_len, width = len(texts), cfg.max_len, frozen_backbone("text", cfg).hidden_size
    out = {"bottom": torch.zeros(n, max_len, width, dtype=torch.float16),
           "final": torch.zeros(n, max_len, width, dtype=torch.float16),
           "mask": torch.zeros(n, max_len, dtype=torch.bool)}
    for group, states in _encode("text", Places(cfg, texts, None, ("text",)), cfg, batch_size, cfg.text_model):
        rows, tokens = slice(group[0], group[-1] + 1), states["text_mask"].shape[1]
        for name in out:
            out[name][rows, :tokens] = states[f"text_{name}"].cpu()
    return out


def encode_images(images, cfg, batch_size: int = 64) -> dict:
    """Frozen image encoder over image files or PIL images: {"bottom" (N,C,h,w), "final" (N,T,C)} fp16."""
    parts = [(states["image_bottom"].cpu(), states["image_final"].cpu())
             for _, states in _encode("image", Places(cfg, None, images, ("image",)), cfg, batch_size, cfg.image_model)]
    return {"bottom": torch.cat([p[0] for p in parts]), "final": torch.cat([p[1] for p in parts])}


def _dataset_features(ds, cfg, modality: str, column: str, model_name: str, tag: str, encode) -> dict:
    """`encode` over the `column` of train + test rows, with their ids, cached per dataset content on disk in
    resumable chunks (see `cached_arrays`) and read memory-mapped."""
    key = f"{modality}-{dataset_fingerprint(ds.data_dir, cfg.cache_dir)}-{model_name.replace('/', '_')}-{tag}"
    rows = all_rows(ds)
    values = rows[column].tolist()
    try:
        return cached_arrays(Path(cfg.cache_dir) / "features" / key, len(rows),
                             lambda start, stop: encode(values[start:stop]),
                             {"ids": rows["id"].tolist(), "model": model_name},
                             f"encoding {modality} ({model_name}, {CHUNK_ROWS}-row chunks)")
    finally:
        frozen_to_host(modality, cfg)


def frozen_to_host(modality: str, cfg) -> None:
    """The shared frozen encoder back in host memory after a caching pass on a GPU (`cache_tower` moves it
    there in place): the fine-tunes that follow need the card, where RoBERTa-large and ViT-L held 2.6 GB."""
    held = loaded_frozen(modality, cfg)
    if held is not None and _on_gpu(held.model):
        held.model.to("cpu")
        torch.cuda.empty_cache()


def _on_gpu(model: torch.nn.Module) -> bool:
    return any(p.is_cuda for p in model.parameters())


def text_features(ds, cfg) -> dict:
    """{"ids", "bottom" (N,L,H) fp16, "final" (N,L,H) fp16, "mask" (N,L) bool} for train + test rows."""
    return _dataset_features(ds, cfg, "text", "overview", *_entry_name(cfg, "text"), lambda texts: encode_texts(texts, cfg))


def image_features(ds, cfg) -> dict:
    """{"ids", "bottom" (N,C,h,w) fp16, "final" (N,T,C) fp16 tokens} for train + test rows."""
    return _dataset_features(ds, cfg, "image", "image_file", *_entry_name(cfg, "image"), lambda files: encode_images(files, cfg))


def model_inputs(states: dict, keys, chunk_rows: int = 512) -> dict:
    """Of `keys`, those that `states` (cached encoder states, as stored) has or can give: a pooled vector per
    row (models.POOLED: the masked mean of the final text states, the mean of the image tokens), computed once,
    chunk by chunk, bit for bit as the model would per batch: a late fusion reads these instead of gathering
    every row's tokens from the cache at every step (2.3x faster per epoch)."""
    out = {k: states[k] for k in keys if k in states}
    for key in (k for k in keys if k in POOLED and k not in states and all(s in states for s in POOLED[k][0])):
        sources, pool = POOLED[key]
        n = len(states[sources[0]])
        out[key] = torch.cat([pool(*(states[s][start:start + chunk_rows] for s in sources))
                              for start in range(0, n, chunk_rows)])
    return out


def needs_token_states(cfg, modality: str) -> bool:
    """Whether some model of this configuration trains on cached token states of `modality` (the demo's cached
    fine-tunes and fusion); if none does, its frozen models read pooled vectors alone (`pooled_features`)."""
    return any(cfg.schedule(kind, stage).training_mode == "cached" and
               any(k.startswith(modality) and k not in POOLED for k in kinds.get(kind).inputs)
               for kind in kinds.names() for stage in (None, *STAGES))


def _entry_name(cfg, modality: str) -> tuple[str, str]:
    """The encoder and what else shapes its cached states: length or size, the split, the weights file, and the
    precision they were computed in (an fp32 cache is not reused under bf16, nor the reverse)."""
    precision = caching_precision(cfg)
    computed = "" if precision == "fp32" else f"-{precision}"
    if modality == "text":
        return cfg.text_model, f"len{cfg.max_len}-top{cfg.text_top_layers}{computed}"
    weights = f"-w{_file_digests([cfg.image_weights], cfg.cache_dir)[0][:8]}" if cfg.image_weights else ""
    return cfg.image_model, f"{cfg.image_size}px-top{cfg.image_top_stages}{weights}{computed}"


def pooled_features(ds, cfg, modality: str) -> dict:
    """{"ids", "<modality>_pooled" (N, width) float32}: the frozen encoder's pooled vector per row, made chunk by
    chunk from the token states as the token cache stores them (fp16) and then dropped: kilobytes per row where
    RoBERTa-large's 256 token states are a megabyte (the full profile's frozen models, 02's experts, late fusion)."""
    key = f"{modality}_pooled"
    column, encode = ("overview", encode_texts) if modality == "text" else ("image_file", encode_images)
    model, tag = _entry_name(cfg, modality)

    def pool(values):
        states = encode(values, cfg)
        named = {f"{modality}_{name}": value for name, value in states.items()}
        return {key: model_inputs(named, [key])[key]}

    return _dataset_features(ds, cfg, modality, column, model, f"{tag}-pooled", pool)


def soft_digest(rows, soft: dict[str, np.ndarray]) -> str:
    """Changes with the soft targets: a student of other teachers is retrained, never reused."""
    h = hashlib.sha1(np.asarray(rows, dtype=np.int64).tobytes())
    for level in sorted(soft):
        h.update(np.round(np.asarray(soft[level], dtype=np.float64), 6).tobytes())
    return h.hexdigest()[:12]


class ModelData(Dataset):
    """What a model trains and predicts on: train rows, then test rows, then any appended copies (03's augmented
    rows), with labels (-1 on test rows). Two kinds: `TensorData` (cached tensors, sliced per batch) and
    `rows.RawRows` (raw rows decoded per batch); the training loop, the ensemble and the predictor use only this
    interface. The container holds which rows are train and test rows (`train_rows`, `test_rows`; `extended`
    appends copies after them), and which have a photo (`photo_rows`), so that no other module counts positions."""

    raw: bool
    n_train: int
    n_test: int
    soft_digest: str | None = None  # set by `with_soft_labels`: what the soft targets are, for the fit's key
    copies_digest: str | None = None  # set by `extended`: what the appended copies are, for the fit's key
    copies: tuple[np.ndarray, np.ndarray] | None = None  # (the copies' rows, their originals' rows): `extended`

    @property
    def train_rows(self) -> np.ndarray:
        return np.arange(self.n_train)

    @property
    def test_rows(self) -> np.ndarray:
        return np.arange(self.n_train, self.n_train + self.n_test)

    def photo_rows(self) -> np.ndarray:
        """(len,) bool: which rows have a photo (a copy has one when its original has)."""
        raise NotImplementedError

    def loader(self, groups, device: str = "cpu", epoch: int = 0):
        """One batch (a dict of tensors) per group of row indices, in order."""
        raise NotImplementedError

    def labels_of(self, indices, level: str = "cat3") -> np.ndarray:
        raise NotImplementedError

    def for_training(self, train_idx, seed: int = 0) -> "ModelData":
        """A view in which augmentation (if any) touches `train_idx` only."""
        raise NotImplementedError

    def with_soft_labels(self, rows, soft: dict[str, np.ndarray]) -> "ModelData":
        """A view whose `rows` train on soft targets (per level, (len(rows), classes) probabilities: the ensemble's
        test predictions, for distillation) instead of their labels; see training.soft_targets."""
        raise NotImplementedError


class TensorData(ModelData):
    """Rows of a dict of equally long tensors (cached features and labels)."""

    raw = False

    def __init__(self, tensors: dict[str, torch.Tensor], n_train: int | None = None, n_test: int = 0):
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))
        self.n_train = self.n if n_train is None else n_train
        self.n_test = n_test

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.tensors.items()}

    def loader(self, groups, device: str = "cpu", epoch: int = 0):
        """One batch per group of row indices, sliced directly (no per-row Python work)."""
        for group in groups:
            chunk = torch.from_numpy(np.asarray(group))
            yield {k: v[chunk] for k, v in self.tensors.items()}

    def labels_of(self, indices, level: str = "cat3") -> np.ndarray:
        return self.tensors[level][np.asarray(indices)].numpy()

    def photo_rows(self) -> np.ndarray:
        present = self.tensors.get("image_present")
        return np.ones(self.n, bool) if present is None else present.numpy().astype(bool)

    def for_training(self, train_idx, seed: int = 0) -> "TensorData":
        """Cached rows are not augmented per draw: the same rows."""
        return self

    def with_soft_labels(self, rows, soft: dict[str, np.ndarray]) -> "TensorData":
        tensors = dict(self.tensors)
        for level, probs in soft.items():
            full = torch.zeros(self.n, probs.shape[1])
            full[torch.as_tensor(np.asarray(rows))] = torch.as_tensor(probs, dtype=torch.float32)
            tensors[f"soft_{level}"] = full
        flags = torch.zeros(self.n, dtype=torch.bool)
        flags[torch.as_tensor(np.asarray(rows))] = True
        tensors["soft"] = flags
        copy = TensorData(tensors, self.n_train, self.n_test)
        copy.soft_digest = soft_digest(rows, soft)
        copy.copies, copy.copies_digest = self.copies, self.copies_digest
        return copy

    def extended(self, extra: dict[str, torch.Tensor], sources=None, digest: str | None = None
                 ) -> tuple["TensorData", np.ndarray]:
        """A copy with `extra` rows appended (same keys), and the indices of those rows. `sources` (each extra
        row's original) and `digest` (what the rows are) mark them as augmented copies (`copies`) that train
        only beside their originals, and that a fit's key names."""
        n_extra = len(next(iter(extra.values())))
        merged = {k: torch.cat([v, extra[k].to(v.dtype)]) for k, v in self.tensors.items()}
        out, rows = TensorData(merged, self.n_train, self.n_test), np.arange(self.n, self.n + n_extra)
        if sources is not None:
            out.copies, out.copies_digest = (rows, np.asarray(sources)), digest
        return out, rows


def feature_data(ds, cfg, keys, labels_frame=None):
    """A TensorData over train + test rows with the cached inputs `keys` and labels (-1 on test rows).

    Pooled keys alone read a pooled cache entry (`pooled_features`) where no model of the configuration reads the
    token states (else they are pooled from those: the same vectors, bit for bit). `labels_frame` (default: ds.train) supplies the labels, so augmented or
    corrected labels can be used.
    """
    tensors = {}
    for modality in ("text", "image"):
        wanted = [k for k in keys if k.startswith(modality)]
        if wanted and all(k in POOLED for k in wanted) and not needs_token_states(cfg, modality):
            tensors[f"{modality}_pooled"] = pooled_features(ds, cfg, modality)[f"{modality}_pooled"]
        elif wanted and modality == "text":
            text = text_features(ds, cfg)
            tensors.update({"text_bottom": text["bottom"], "text_final": text["final"], "text_mask": text["mask"]})
        elif wanted:
            image = image_features(ds, cfg)
            tensors.update({"image_bottom": image["bottom"], "image_final": image["final"]})
    tensors = model_inputs(tensors, keys)
    if any(k.startswith("image") for k in keys):
        tensors["image_present"] = torch.tensor(has_photo(ds))
    tensors.update({level: torch.from_numpy(y) for level, y in row_labels(ds, labels_frame).items()})
    return TensorData(tensors, len(ds.train), len(ds.test))


def uninformed(probs: dict[str, np.ndarray], blind: np.ndarray) -> dict[str, np.ndarray]:
    """The rule for a row that lacks every input its model reads (a photo, for an image-only model): uniform
    probabilities, no information, so that in a blend the other members decide. Training, 06 and the predictor
    all apply this one; `probs` is changed in place and returned."""
    for value in probs.values():
        value[blind] = 1.0 / value.shape[1]
    return probs


def has_photo(ds) -> np.ndarray:
    """(N,) bool over train + test rows: which places have a photo (an empty img_path means none)."""
    return all_rows(ds)["image_file"].notna().to_numpy()


def row_labels(ds, labels_frame=None) -> dict[str, np.ndarray]:
    """Label codes per level for train + test rows (-1 on test rows); `labels_frame` (default: ds.train)
    supplies them, so augmented or corrected labels can be used."""
    frame = ds.train if labels_frame is None else labels_frame
    return {level: np.concatenate([ds.taxonomy.encode(level, frame[level]), np.full(len(ds.test), -1)])
            for level in LEVELS}
