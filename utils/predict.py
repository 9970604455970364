"""Hashtags for a new place: the consistent path `#cat1 #cat2 #cat3` and the top-k cat3 with probabilities.

    python -m utils.predict --image photo.jpg --text "서울 종로구의 한정식 식당 ..."
    python -m utils.predict --text "..."            # a place without a photo; --image alone also works (weaker)
    python -m utils.predict --csv path/to/test.csv --out predictions.csv   # id,img_path,overview (real layout)
    python -m utils.predict --run outputs/demo-generated-seed0 ...         # default: the most recent run

Loads the submission's ensemble of a run (notebook 06's K-fold members and weights, described by
<run>/predictor.json): `--csv` on the test set gives the submission's labels.

The hashtag path is the most probable *consistent* path: each cat3's probability is weighed with those of its
cat2 and cat1 parents from the model's cat2 and cat1 heads. When those heads disagree with the cat3 head, the
path's cat3 can differ from the single most probable cat3 in the top-k list; both are printed, the path with its
own probabilities, so the difference is visible.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import pickle
import sys
import warnings
import weakref
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import kinds, paths
from .backbones import loaded_frozen
from .catalogue import CHUNK_ROWS, CatalogueError, parse_shard, tag_catalogue
from .config import Config
from .data import DataValidationError, blank_text, check_columns_present, check_misread, read_csv_any, resolve_image_paths
from .features import cache_tower, encoder_states, uninformed
from .images import no_photo, probe_image
from .inputs import Places, batches_of, to_device
from .io import DamagedFile, load_model, read_json, save_model, write_json
from .keywords import hashtags
from .metrics import hierarchical_decode
from .models import ImageTower, TextTower, build_model
from .progress import bar
from .runtime import autocast, choose_precision, cpu_computes_bf16, half_dtype, pick_device
from .taxonomy import Taxonomy
from .text import analysed, kiwi_options, use_kiwi
from .training import load_checkpoint

MODEL_CARD = "predictor.json"
BLOCK_ROWS = {"cpu": 512, "cuda": 2048}  # rows read at once; each member visits the device once per block. On a
# GPU its units cross the host link each time (the full profile's members up to 66 GB: seconds), so blocks are
# longer there; their photos wait on the host as uint8, 2,048 rows in the bytes of 512 in float32
NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)  # kept fp32: _kept_fp32


class PredictionError(ValueError):
    """A clear, user-facing reason why a prediction cannot be made."""


def save_predictor(cfg: Config, taxonomy: Taxonomy, units: dict[str, list[Path]], weights: dict[str, float], run_dir,
                   keywords=None) -> Path:
    """Describe the submission's ensemble for `predict`: per member kind its weight and its K-fold units (one
    checkpoint, or a TF-IDF model.pkl, per fold and seed), exactly those that made the submission (06);
    the run's label tree (the data folder's own taxonomy.csv, or the bundled one), so that predicting needs
    no data folder; the keyword model (utils.keywords), saved beside it; and the Kiwi options the run's text
    was analysed with. A member of weight 0 (`ensemble.ensemble_weights` keeps one member alone) adds nothing to
    the blend and is left out, so that predicting does not load or run it."""
    members = [{"kind": kind, "weight": float(weights[kind]), "units": [_within(u, run_dir) for u in units[kind]]}
               for kind in weights if weights[kind] > 0]
    card = {"cfg": cfg.to_dict(), "taxonomy": taxonomy.records(), "members": members, "kiwi": kiwi_options()}
    if keywords is not None:
        card["keywords"] = _within(save_model(keywords, Path(run_dir) / "keywords.pkl"), run_dir)
    return write_json(card, Path(run_dir) / MODEL_CARD)


def _within(path, run_dir) -> str:
    """A path as the card records it: relative to the run folder, so that the folder can move (a Kaggle dataset,
    Drive) and still load; absolute only for a file outside it."""
    path, root = Path(path).resolve(), Path(run_dir).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def latest_run(output_dir=None) -> Path:
    """The run folder under `output_dir` (default outputs/) whose predictor was written last."""
    root = Path(output_dir) if output_dir else paths.OUTPUTS
    cards = sorted(root.glob(f"*/{MODEL_CARD}"), key=lambda p: p.stat().st_mtime)
    if not cards:
        raise PredictionError(f"{root}: no run with a trained predictor; run ./run_all.sh (notebook 06) first")
    return cards[-1].parent


def has_text(text) -> bool:
    """Whether a text holds something to read: not only markup, whitespace or invisible characters."""
    return text is not None and not blank_text(str(text))


def check_inputs(images, texts, ids=None) -> None:
    """Every input checked before any model loads: a clear message for the first bad one. A place needs a text
    or a photo (None or "" for the one it lacks); a photo alone gets a warning, since the text carries most
    of the signal."""
    ids = list(ids) if ids is not None else [f"item {i + 1}" for i in range(len(images))]
    photo_only = []
    for rid, path, text in zip(ids, images, texts):
        if no_photo(path) and not has_text(text):
            raise PredictionError(f"{rid}: no text and no photo; give a description, a photo, or both")
        if not no_photo(path):
            error = probe_image(path)
            if error:
                raise PredictionError(f"{rid}: {path}: {error}")
        if not has_text(text):
            photo_only.append(rid)
    if photo_only:
        warnings.warn(f"{len(photo_only)} place(s) with a photo but no text ({', '.join(map(str, photo_only[:5]))}): "
                      "the text carries most of the signal, so expect weaker categories and no keywords",
                      stacklevel=2)


def weight_dtype(device: str, precision: str) -> torch.dtype:
    """The predictor's weights: on a GPU in the half precision the run computes in (runtime.choose_precision: fp16
    below compute capability 8, bf16 from it), which halves what every member puts on the device; on the CPU
    fp32, so that CPU answers are those the run submitted (its bf16 autocast, if set, still applies)."""
    return (half_dtype(precision) or torch.float32) if str(device).startswith("cuda") else torch.float32


def _tensors(module: torch.nn.Module):
    return itertools.chain(module.parameters(), module.buffers())


def _kept_fp32(units: list) -> set:
    """ids of the normalisation layers' tensors: in half-precision weights they stay fp32, as in mixed-precision
    training (autocast computes them in fp32, and the CPU has no kernel for half weights on fp32 inputs)."""
    return {id(t) for unit in units for m in unit.modules() if isinstance(m, NORMS) for t in _tensors(m)}


def _moved(tensor: torch.Tensor, device, dtype) -> torch.Tensor:
    """`tensor` on `device`, in `dtype` if it is floating (None: its own); the very same storage where both are
    already its own."""
    moved = tensor.detach().to(device=device, dtype=dtype if tensor.is_floating_point() else None)
    return torch.nn.Parameter(moved, tensor.requires_grad) if isinstance(tensor, torch.nn.Parameter) else moved


def _to_device(units: list, device, dtype) -> list:
    """Copies of one member's units on `device`, floating tensors in `dtype`; the loaded units stay on the host as
    they are. Every unit reaches the device through here, one member at a time, so that what is resident can be
    counted (tests/test_device_memory.py); a tensor the units share (a frozen encoder) is copied once. Where the
    device and dtype are the units' own (the CPU), the copies hold the very same tensors: nothing is copied and
    the answers are bit for bit those of the units themselves."""
    memo, kept = {}, _kept_fp32(units)
    for unit in units:
        for tensor in _tensors(unit):
            if id(tensor) not in memo:
                memo[id(tensor)] = _moved(tensor, device, None if id(tensor) in kept else dtype)
    return copy.deepcopy(units, memo)


def _cast_own(model: torch.nn.Module, dtype, shared: set) -> torch.nn.Module:
    """A unit's own floating tensors in `dtype` on the host (half the host memory when the weights are half), but
    for its normalisation layers (`_kept_fp32`) and the shared frozen encoders (`shared`: their tensors' ids),
    which stay as they are for their other users."""
    kept = shared | _kept_fp32([model])
    for tensor in _tensors(model):
        if tensor.is_floating_point() and id(tensor) not in kept:
            tensor.data = tensor.data.to(dtype)
    return model


_LOADED = weakref.WeakValueDictionary()  # the predictors alive in this process, by run, card version and device


def _identity(run_dir, device: str) -> tuple:
    card = Path(run_dir).resolve() / MODEL_CARD
    return str(card), card.stat().st_mtime_ns if card.exists() else None, pick_device(device)


def emulated_bf16(device: str, capability: tuple[int, int] | None = None) -> str:
    """Why `device` would only emulate bf16 (empty where it computes it): a CPU without AVX512-BF16 or AMX, a GPU
    below compute capability 8 (T4, V100). `capability` is for tests."""
    if str(device).startswith("cuda"):
        return "" if choose_precision(device, capability=capability) == "bf16" else \
            "this GPU has no native bf16 (compute capability below 8: T4, V100)"
    return "" if cpu_computes_bf16() else "this CPU has no native bf16 (AVX512-BF16 or AMX)"


def load_predictor(run_dir, device: str = "auto") -> "Predictor":
    """The predictor of `run_dir` already loaded in this process (06 builds one, then opens the page), else a new
    one: a second copy of every member would double the memory for the same answers."""
    loaded = _LOADED.get(_identity(run_dir, device))
    return loaded if loaded is not None else Predictor(run_dir, device)


class Predictor:
    """The submission's ensemble as a model of new places: every member's fold and seed units, averaged per
    member, then blended with the weights fitted out of fold (06), decoded by the run's rule.

    The units stay on the host; predicting puts one member's units at a time on the device (`_to_device`), so
    that the device holds at most one member, never the whole ensemble. `dtype`: the weights' precision
    (default `weight_dtype`: half on a GPU, fp32 on the CPU). `bf16_encoders`: the frozen encoders under bf16
    autocast whatever the run computed in, for a catalogue on a CPU that computes bf16 natively (1.5 to 1.7 times the
    places per second there, benchmarks/predict_speed.py); their states then differ in the last bits from the cached
    ones the members trained on, and some answers differ from the submission's (1 to 2% of cat3 measured)."""

    def __init__(self, run_dir, device: str = "auto", dtype: torch.dtype | None = None, bf16_encoders: bool = False):
        self.run_dir = Path(run_dir)
        card_path = self.run_dir / MODEL_CARD
        if not self.run_dir.is_dir():
            raise PredictionError(f"{self.run_dir}: no such run folder (--run takes the folder of a finished run, "
                                  f"the one holding {MODEL_CARD})")
        try:
            card = read_json(card_path)
        except DamagedFile as exc:
            raise PredictionError(f"{exc}; rerun ./run_all.sh 06 to write it again") from None
        if card is None:
            raise PredictionError(f"{card_path}: no trained model found; run ./run_all.sh (notebook 06) first")
        if "members" not in card or "taxonomy" not in card:
            raise PredictionError(f"{card_path} was written by an older version; rerun ./run_all.sh 06")
        for m in card["members"]:
            m["units"] = [str(self.run_dir / u) for u in m["units"]]  # relative: within this folder, wherever it is
        missing = [u for m in card["members"] for u in m["units"] if not Path(u).exists()]
        if missing:
            raise PredictionError(f"trained model file(s) missing: {missing}; rerun ./run_all.sh 06")
        try:
            self.cfg = Config.from_dict(card["cfg"])
        except (TypeError, ValueError) as exc:
            raise PredictionError(f"{card_path} was written by another version ({exc}); rerun ./run_all.sh 06") from exc
        if not Path(self.cfg.cache_dir).is_dir():  # a run folder moved without its cache: rebuilt from the packages
            self.cfg = replace(self.cfg, cache_dir=str(self.run_dir / "cache"))
        self.taxonomy, self.device = Taxonomy.from_records(card["taxonomy"]), pick_device(device)
        self.precision = choose_precision(self.device, self.cfg.precision)
        self.encoder_precision = "bf16" if bf16_encoders else self.precision
        if bf16_encoders and (slower := emulated_bf16(self.device)):
            warnings.warn(f"bf16 encoders: {slower}, so torch emulates it, slower than the run's {self.precision}; "
                          "leave --bf16-encoders out here")
        self.dtype = dtype or weight_dtype(self.device, self.precision)
        self.members = [(m["kind"], m["weight"], [self._load(u, partial(self._load_unit, m["kind"])) for u in m["units"]])
                        for m in card["members"]]
        self.keywords = None
        if card.get("keywords"):
            self.keywords = self._load(str(self.run_dir / card["keywords"]), load_model)
        neural = [kind for kind, _, _ in self.members if kinds.get(kind).neural]
        self.morphemes = bool(self.keywords) or len(neural) < len(self.members)  # Kiwi's analysis is read
        if self.morphemes:  # new text analysed as the training text was (a card without options: Kiwi's defaults)
            use_kiwi(card.get("kiwi", {}))
        self.reads = tuple(m for m in ("text", "image") if any(m in kinds.get(k).reads for k in neural))
        # Members trained on cached encoder states get those states as the cache holds them (fp16), computed
        # once per batch for all of them, so that they answer exactly as they did for the submission.
        self.cached_kinds = {k for k in neural if self.cfg.schedule(k, "kfold").training_mode == "cached"}
        self.cached_inputs = sorted({key for kind in self.cached_kinds for key in kinds.get(kind).inputs})
        self.cache_towers = {m: cache_tower(m, self.cfg, self.device)
                             for m in sorted({m for k in self.cached_kinds for m in kinds.get(k).reads})}
        if dtype is None and not bf16_encoders:
            _LOADED[_identity(self.run_dir, device)] = self

    def _load(self, unit: str, read):
        """`read(unit)`: a unit or the keyword model, or a PredictionError naming its file when it cannot be read
        (truncated, another version)."""
        try:
            return read(unit)
        except DamagedFile as exc:
            raise PredictionError(f"{exc}; rerun ./run_all.sh 06 to train it again") from None
        except (RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError, OSError) as exc:
            raise PredictionError(f"{unit}: cannot be loaded ({str(exc)[:300]}); rerun ./run_all.sh 06 to train "
                                  f"it again") from None

    def _load_unit(self, kind: str, unit: str):
        """One unit on the host, in the predictor's dtype but for the frozen encoders it shares."""
        if not kinds.get(kind).neural:
            return load_model(unit)
        model = load_checkpoint(build_model(kind, self.cfg, self.taxonomy.sizes, stage="kfold"), unit).eval()
        if self.dtype == torch.float32:
            return model
        frozen = [loaded_frozen(m, self.cfg) for m in kinds.get(kind).reads]  # build_model loaded those it shares
        shared = {id(t) for encoder in frozen if encoder is not None for t in _tensors(encoder.model)}
        return _cast_own(model, self.dtype, shared)

    def on_device(self, units: list, dtype: torch.dtype | None = None) -> list:
        """Copies of `units` on the predictor's device (in `dtype`, default the predictor's), for as long as the
        caller holds them: the page's Grad-CAM of one unit in fp32."""
        return _to_device(units, self.device, dtype or self.dtype)

    def _autocast(self):
        """Half weights compute under autocast in their own dtype; fp32 weights as the run computed
        (cfg.precision: fp32, or bf16 autocast where set)."""
        if self.dtype == torch.float32:
            return autocast(self.device, self.precision)
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype)

    @staticmethod
    def _frozen_states(model, batch: dict) -> dict:
        """A member's fold models share their frozen encoders: run those once and hand every fold the states."""
        batch = dict(batch)
        tower = getattr(model, "tower", None)
        text = getattr(model, "text", tower if isinstance(tower, TextTower) else None)
        image = getattr(model, "image", tower if isinstance(tower, ImageTower) else None)
        if text is not None and not text.trains_top:
            batch["text_final"], batch["text_mask"] = text(batch)
        if image is not None and not image.trains_top:
            batch["image_final"] = image(batch)
        return batch

    def _member_probs(self, kind: str, units: list, batch: dict, texts: list[str]) -> dict[str, np.ndarray]:
        """One member's probabilities for a chunk: the mean over its fold and seed units; uniform (no information,
        as in training, see experiments.fit_model) for an item that lacks every input the member reads."""
        if not kinds.get(kind).neural:
            fold_probs = [kinds.get(kind).answers()(m, texts, self.taxonomy) for m in units]
            mean = {level: np.mean([p[level] for p in fold_probs], 0) for level in fold_probs[0]}
        else:
            with torch.inference_mode(), self._autocast():
                shared = self._frozen_states(units[0], batch)
                mean = {}
                for model in units:
                    for level, value in model(shared).items():
                        mean[level] = mean.get(level, 0) + value.float().softmax(-1).cpu().numpy() / len(units)
        return uninformed(mean, ~np.any([batch[f"{m}_present"].cpu().numpy() for m in kinds.get(kind).reads], axis=0))

    def probabilities(self, images, texts, batch_size: int = 32, check: bool = True,
                      progress: bool = True) -> dict[str, np.ndarray]:
        """Probabilities per level: the members' fold means blended with the submission's weights; every input
        is checked before any work (`check=False`: the caller already did, as the CLI does before loading).
        `progress`: a bar over the blocks (none where the caller shows its own)."""
        images = [None if no_photo(p) else p for p in images]
        texts = [t if has_text(t) else "" for t in texts]
        if check:
            check_inputs(images, texts)
        rows = BLOCK_ROWS.get(torch.device(self.device).type, BLOCK_ROWS["cpu"])
        block = batch_size * max(1, rows // batch_size)  # whole chunks: the same chunks as without blocks
        parts = [self._block(images[start:start + block], texts[start:start + block], batch_size)
                 for start in bar(range(0, len(images), block), "predicting", disable=not progress)]
        return {level: np.concatenate([part[level] for part in parts]) for level in (parts[0] if parts else ())}

    def _block(self, images: list, texts: list, batch_size: int) -> dict[str, np.ndarray]:
        """A block's probabilities: its chunks' inputs read once, then each member on the device in turn over all
        of them, blended in the members' order (the same sums as chunk by chunk, bit for bit)."""
        groups, places = batches_of(len(texts), batch_size), Places(self.cfg, texts, images, self.reads)
        inputs = [self._inputs(batch) for batch in places.loader(groups, self.device, pin=False)]
        blended = {}
        for kind, weight, units in self.members:
            for level, value in self._member_block(kind, units, inputs, [[texts[i] for i in g] for g in groups]).items():
                blended[level] = blended.get(level, 0) + weight * value
        return blended

    def _member_block(self, kind: str, units: list, inputs: list, texts: list) -> dict[str, np.ndarray]:
        """One member over a block's chunks; its units are on the device only while this runs."""
        if not kinds.get(kind).neural:  # the whole block in one call: scikit-learn's cost per call paid once
            reads = kinds.get(kind).reads
            present = {f"{m}_present": torch.cat([batch[f"{m}_present"] for batch, _ in inputs]) for m in reads}
            return self._member_probs(kind, units, present, [t for chunk in texts for t in chunk])
        placed = _to_device(units, self.device, self.dtype)
        probs = []
        for (batch, cached), chunk_texts in zip(inputs, texts):
            chunk = to_device(cached if kind in self.cached_kinds else batch, self.device)
            probs.append(self._member_probs(kind, placed, chunk, list(chunk_texts)))
        return {level: np.concatenate([p[level] for p in probs]) for level in probs[0]}

    def _inputs(self, batch: dict) -> tuple[dict, dict]:
        """A chunk's inputs as read (`inputs.Places`: photos uint8, normalised on the device by each member that
        reads them, as in training), kept on the host; and for the cached-mode members, which read no photo, the
        cached encoder states (`features.encoder_states`) as the caching pass computes them, those they and their
        frozen towers read, beside the rest."""
        cached = {}
        if self.cache_towers:
            with torch.inference_mode(), autocast(self.device, self.encoder_precision):  # the caching pass's, or bf16
                cached = encoder_states(self.cache_towers, to_device(batch, self.device), self.cached_inputs)
        read = {*self.cached_inputs, "text_final", "text_mask", "image_final"}
        batch = {k: v.clone() for k, v in batch.items()}  # a block holds hundreds: none in a worker's shared memory
        rest = {k: v for k, v in batch.items() if k not in ("pixels", "pixel_stats")}
        return batch, {**rest, **{k: v.cpu() for k, v in cached.items() if k in read}}

    def predict(self, images, texts, top_k: int = 3, check: bool = True, n_keywords: int = 3,
                progress: bool = True) -> list[dict]:
        """Per item: the consistent best path with its own probabilities, the top-k cat3, and the hashtags: the
        path's categories followed by up to `n_keywords` keywords of the text."""
        texts = [t if has_text(t) else "" for t in texts]
        with analysed(texts) if self.morphemes else nullcontext():
            probs = self.probabilities(images, texts, check=check, progress=progress)
            words = self.keywords.keywords(texts, n_keywords) if self.keywords and n_keywords else [[]] * len(texts)
        best = hierarchical_decode(probs, self.taxonomy, self.cfg.decode)["cat3"]
        parent2, parent1 = self.taxonomy.parent_of("cat3"), self.taxonomy.parent_of("cat2")
        results = []
        for i, b in enumerate(best):
            cat1, cat2, cat3 = self.taxonomy.path(self.taxonomy.cat3[b])
            order = np.argsort(-probs["cat3"][i])[:top_k]
            results.append({"cat1": cat1, "cat2": cat2, "cat3": cat3, "keywords": words[i],
                            "hashtags": hashtags((cat1, cat2, cat3), words[i]),
                            "path_probability": {"cat1": float(probs["cat1"][i, parent1[parent2[b]]]),
                                                 "cat2": float(probs["cat2"][i, parent2[b]]),
                                                 "cat3": float(probs["cat3"][i, b])},
                            "top_k": [(self.taxonomy.cat3[j], float(probs["cat3"][i, j])) for j in order]})
        return results


def check_rows(n_rows: int, wanted: int, seed: int) -> np.ndarray:
    """Positions, in order, of the test rows on which 06 checks the rebuilt predictor against the submission:
    every row (`wanted` 0 or at least `n_rows`), else a seeded draw of `wanted`, the demo's (re-encoding all
    994 rows from their raw files was 35 s of a 20-minute budget on a slow machine)."""
    if wanted <= 0 or wanted >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=wanted, replace=False))


def read_places(csv_path) -> tuple[list[str], list[str], list[str]]:
    """ids, image files and texts of a CSV in the real layout; a missing column or a path leaving the CSV's
    folder, or Korean read in the wrong encoding, is named with its file, row and column before any model loads."""
    frame = read_csv_any(csv_path)
    problems = check_columns_present(frame, ["id", "img_path", "overview"], Path(csv_path).name)
    if problems:
        raise DataValidationError(problems, str(csv_path))
    base = Path(csv_path).resolve().parent
    files, problems = resolve_image_paths(frame, base, Path(csv_path).name)
    problems += check_misread(frame, Path(csv_path).name)
    if problems:
        raise DataValidationError(problems, str(csv_path))
    return frame["id"].tolist(), files, frame["overview"].tolist()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Hashtags (#cat1 #cat2 #cat3) for places from a photo and a text.",
        epilog="The hashtag path is the most probable consistent path of the taxonomy (cat3 weighed with its cat2 "
               "and cat1 parents); its own probabilities are printed beside it. Its cat3 can differ from the most "
               "probable single cat3 of the top-k list when the parent heads disagree with the cat3 head.")
    parser.add_argument("--image", help="a photo of the place (optional when --text is given)")
    parser.add_argument("--text", help="its description (Korean overview; optional when --image is given, but the "
                                       "text carries most of the signal)")
    parser.add_argument("--csv", help="many at once: a CSV (or Parquet) file in the real layout with id,img_path,overview; "
                                      "without --out every row is checked first and the tags are printed")
    parser.add_argument("--out", help="with --csv: tag the whole catalogue into this CSV or Parquet file, in chunks that "
                                      "a rerun continues after a stop; rows that cannot be tagged go to "
                                      "<out stem>.refused.csv with the reason")
    parser.add_argument("--shard", help="with --out: K/N tags only every N-th chunk from the K-th, into <out>.parts/ "
                                        "(one process or machine per shard); then --merge joins them")
    parser.add_argument("--merge", action="store_true", help="with --out: join the shards' parts into --out")
    parser.add_argument("--chunk-rows", type=_positive, default=CHUNK_ROWS, help="rows per chunk with --out (default "
                                                                           f"{CHUNK_ROWS})")
    parser.add_argument("--top-k", type=_positive, default=3)
    parser.add_argument("--run", default=None, help="the run folder to load (default: the most recent run under "
                                                     "--output-dir)")
    parser.add_argument("--output-dir", default=None, help="where ./run_all.sh wrote its runs (default outputs/)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda, cuda:1")
    parser.add_argument("--bf16-encoders", action="store_true",
                        help="on a CPU that computes bf16 natively (AVX512-BF16 or AMX): the frozen encoders under bf16 "
                             "autocast, 1.5 to 1.7 times the places per second, at the cost of some answers (98 to 99%% "
                             "of cat3 the same as the run's: docs/benchmarks.md#tagging-a-catalogue); slower on other CPUs")
    args = parser.parse_args(argv)
    if not args.csv and not (args.image or args.text):
        parser.error("give --text and/or --image, or --csv")
    if (args.shard or args.merge) and not (args.csv and args.out):
        parser.error("--shard and --merge tag a catalogue: give --csv and --out too")
    try:
        if args.csv and args.out:
            return _tag_catalogue(args)
        if args.csv:
            ids, images, texts = read_places(args.csv)
        else:
            ids, images, texts = ["input"], [args.image], [args.text or ""]
        check_inputs(images, texts, ids)
        run_dir = Path(args.run) if args.run else latest_run(args.output_dir)
        print(f"loading run {run_dir}", file=sys.stderr)
        predictor = Predictor(run_dir, args.device, bf16_encoders=args.bf16_encoders)
        results = predictor.predict(images, texts, args.top_k, check=False)  # checked above, before loading
    except (PredictionError, DataValidationError, CatalogueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for i, r in zip(ids, results):
        p = r["path_probability"]
        top = ", ".join(f"{name} {prob:.2f}" for name, prob in r["top_k"])
        print(f"{i}: {r['hashtags']}  (path p: cat1 {p['cat1']:.2f}, cat2 {p['cat2']:.2f}, cat3 {p['cat3']:.2f})"
              f"   top {args.top_k} cat3: {top}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number of at least 1")
    return value


def _tag_catalogue(args) -> int:
    """--csv with --out: the catalogue streamed into the output (utils.catalogue). A file that cannot be read or
    written (a full disk, a damaged Parquet page, a folder without permission) ends the job with its reason; the
    chunks finished so far stay for the rerun."""
    run_dir = Path(args.run) if args.run else latest_run(args.output_dir)
    card = run_dir / MODEL_CARD
    if not card.is_file():
        raise PredictionError(f"{card}: no trained model found; run ./run_all.sh (notebook 06) first")

    def load():
        print(f"loading run {run_dir}", file=sys.stderr)
        return Predictor(run_dir, args.device, bf16_encoders=args.bf16_encoders)

    from pyarrow.lib import ArrowException

    try:
        tag_catalogue(load, args.csv, args.out, card, parse_shard(args.shard), args.merge, args.chunk_rows, args.top_k,
                      bf16_encoders=args.bf16_encoders)
    except (OSError, ValueError, ArrowException) as exc:
        if isinstance(exc, (FileNotFoundError, PredictionError, DataValidationError, CatalogueError)):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
