"""A resource plan before anything runs: what each fit of each notebook needs, and what the run adapts or refuses.

    python -m utils.plan --profile full --platform colab-t4          # one platform (default: the GPU found here)
    python -m utils.plan --profile full --platform all --json        # colab-t4, kaggle-2xt4, a100-40, h100-80
    python -m utils.plan --profile full --measure                    # recompute the per-item figures (a minute)

Why: the full profile trains RoBERTa-large and ViT-L end to end; on a 15 GB T4 the fusion model alone holds
10 GB of weights, gradients and AdamW moments (12 during AdamW's step), a fusion `last.pt` is 7.8 GB (twice that
while it is rewritten), and the run takes many Colab sessions. A run that finds that out in its fourth hour wastes the
session. So a run starts from this plan: `adapt` changes only what leaves the training as it is (micro-batch with
gradient accumulation keeping the effective batch, gradient checkpointing, one process per model, a checkpoint
within long epochs, the cache folder), `problems` refuses what still cannot fit, naming the `--set` that would
make it fit, and `preset` (`--set platform=NAME`) gives up parts of the recipe, saying which, until it fits.

Where the figures come from:
* parameters: the configuration's models built by `models.build_model` on the meta device (no memory, no hub);
* per-item activations (bytes autograd saves for backward, half-precision autocast, fp32, with gradient
  checkpointing), the peak working set of a forward pass in inference, and FLOPs: traced on the CPU's dispatch
  with fake tensors (shapes only; `trace`): bit for bit what the CPU measurement of benchmarks/gpu_estimate.py
  gave (RoBERTa-large at 256 tokens 770 MiB fp32 / 590 MiB half per item, ViT-L/32 at 384 px 131 MiB and 0.265
  TFLOP). The full and demo profiles' figures are stored in utils/plan_figures.json (`--measure` writes them); other shapes
  are traced when first asked for (seconds);
* GPU rates: FLOPs / (the card's tensor-core peak x an assumed utilisation, Platform.mfu);
* replaced by GPU measurements where benchmarks/results/gpu_check-*.csv exists (benchmarks/gpu_check.sh).
Sizes are GiB (2^30 bytes) throughout, written "GB".
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import kinds, paths
from .io import amount, read_json, write_json

GB = 2**30
CUDA_CONTEXT_GB = 1.5      # CUDA context, cuBLAS/cuDNN workspaces: outside torch's allocator (docs/benchmarks.md)
USABLE = 0.95              # share of a card's, RAM's or disk's nominal size that a plan may fill (fragmentation)
BYTES_TRAINED = 18         # per trained parameter while training: fp32 weights 4, gradients 4, AdamW moments 8,
                           # autocast's cached half copy of the weights 2
BYTES_STEP_EXTRA = 4       # AdamW's foreach step: one fp32 temporary per parameter (sqrt of the second moment)
BYTES_DDP = 4              # DistributedDataParallel's gradient buckets (gradient_as_bucket_view is off)
BYTES_LAST = 12            # last.pt: trainable fp32 weights and both AdamW moments (utils/training.py save_last)
BYTES_BEST = 4             # best.pt: trainable fp32 weights
VALIDATION_BATCH = 256     # training.predict's batch: validation every epoch, test rows of K-fold units
PREDICT_BATCH = 32         # the predictor's batch (utils/predict.py)
ENCODE_BATCH = {"text": 16, "image": 64}  # the caching pass (utils/features.py encode_texts / encode_images)
GRADCAM_BATCH = 16         # utils/gradcam.py explain
IMAGES_PER_CORE = 129.0    # decode + augment + normalise at 384 px, one CPU core (docs/benchmarks.md, 2-core CPU, measured;
                           # gpu_check measures the loader on the GPU machine)
STEP_SECONDS = 0.01        # least time of one optimiser micro-step (launches, Python): ASSUMED
TFIDF_SECONDS_PER_1K = 2.0  # a TF-IDF fit per 1,000 training rows (docs/benchmarks.md: 5-fold at 4k rows, about 25 s): rough
HOST_BASE_GB = 2.5         # a notebook's process: torch, transformers, timm, the pipeline and Kiwi take 1.2 GB
                           # (measured on the CPU), CUDA's libraries and context about 1.3 more: ASSUMED, replaced
                           # by gpu_check's measurement (phase "host") where present
WORKER_GB = 0.4            # one DataLoader worker decoding 384 px images: ASSUMED
DDP_EFFICIENCY = 0.9       # speed-up per added GPU in data-parallel training: ASSUMED
MIN_MICRO_BATCH = 8        # below this micro-batch, gradient checkpointing with a larger one is faster: ASSUMED
REAL_ROWS = (16986, 7280)  # the contest's train and test rows (shared/README.md)
SIZES = {"cat1": 6, "cat2": 18, "cat3": 128}  # the Dacon label tree (the heads' widths; data/dacon_tourism_taxonomy)
AUGMENT_VARIANTS = 8       # 03: none, 4 imbalance options, 3 augmented-copy variants (notebooks/03_augmentation)
HALF = {"bf16", "fp16"}


class PlanError(ValueError):
    """An architecture the plan cannot build offline, or an unknown platform."""


# ====================================================================== platforms
@dataclass(frozen=True)
class Platform:
    """A machine a run is planned for. Memory, RAM and disk as the platform states them (read as GiB)."""

    name: str
    gpu: str                 # what torch.cuda.get_device_name says contains this ("T4"); "" for none
    gpu_memory_gb: float     # per card
    gpus: int
    host_ram_gb: float
    disk_gb: float           # the disk the run folder is written to
    session_hours: float     # 0: no limit
    bf16: bool               # native bf16 (compute capability >= 8): else fp16 with loss scaling
    cpu_cores: int
    peak_tflops: float       # dense half-precision tensor-core peak per card
    mfu: float               # assumed share of that peak a fine-tune reaches (an estimate; gpu_check measures)
    quota_hours: float = 0.0  # GPU hours per week (Kaggle), 0: none
    budget_hours: float = 0.0  # the hours a preset trims the run to (0: none): sessions x length, or the quota
    cache_dir: str = ""      # where the content-keyed cache goes (rebuilt each session), "" = beside the runs
    cache_disk_gb: float = 0.0  # that folder's own disk, 0: the run folder's
    disk_note: str = ""


PLATFORMS = {
    "colab-t4": Platform("colab-t4", "T4", 15.0, 1, 12.7, 100.0, 12.0, False, 2, 65.0, 0.3, budget_hours=24.0,
                         cache_dir="/content/cache",
                         disk_note="Colab's local disk (~100 GB) is wiped when the session ends: to resume in the next "
                                   "session put the run folder on Google Drive (--output-dir /content/drive/MyDrive/"
                                   "outputs; Drive's free tier holds 15 GB); the cache stays local (/content/cache)"),
    "kaggle-2xt4": Platform("kaggle-2xt4", "T4", 15.0, 2, 30.0, 20.0, 12.0, False, 4, 65.0, 0.3, quota_hours=30.0,
                            budget_hours=30.0, cache_dir="/tmp/pipeline-cache", cache_disk_gb=50.0,
                            disk_note="/kaggle/working holds 20 GB and is saved with the notebook's version; the cache "
                                      "goes outside it (/tmp/pipeline-cache, rebuilt each session; Kaggle states no "
                                      "size for that disk: 50 GB ASSUMED, the run checks what it finds)"),
    "a100-40": Platform("a100-40", "A100", 40.0, 1, 83.0, 200.0, 0.0, True, 12, 312.0, 0.4,
                        disk_note="a cloud VM like GCP's a2-highgpu-1g (12 vCPUs, 85 GB RAM); 200 GB disk assumed"),
    "h100-80": Platform("h100-80", "H100", 80.0, 1, 200.0, 200.0, 0.0, True, 16, 989.0, 0.35,
                        disk_note="a single-H100 cloud VM; 16 cores, 200 GB RAM and disk assumed"),
}
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10": 125.0, "L4": 121.0, "V100": 125.0, "T4": 65.0,
               "P100": 18.7}  # dense fp16/bf16 tensor-core peaks (vendors' data sheets)


def detect_platform(output_dir: str | None = None) -> Platform:
    """The machine this process runs on: its GPUs, RAM, free disk of the output folder and cores."""
    import shutil

    import torch

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    folder = Path(output_dir or paths.OUTPUTS)
    while not folder.exists():
        folder = folder.parent
    disk = shutil.disk_usage(folder).free / GB
    cores = os.cpu_count() or 1
    if not torch.cuda.is_available():
        return Platform("cpu", "", 0.0, 0, ram, disk, 0.0, False, cores, 0.05 * cores, 0.5)
    props = torch.cuda.get_device_properties(0)
    key = next((k for k in PEAK_TFLOPS if k in props.name), "")
    return Platform(f"detected ({props.name})", key or props.name, props.total_memory / GB, torch.cuda.device_count(),
                    ram, disk, 0.0, props.major >= 8, cores, PEAK_TFLOPS.get(key, 65.0), 0.3)


def platform_named(name: str | None, output_dir: str | None = None) -> Platform:
    """A preset by name, or the machine found here for an empty name (or "detect")."""
    if not name or name == "detect":
        return detect_platform(output_dir)
    if name not in PLATFORMS:
        raise PlanError(f"unknown platform {name!r}; choose one of {', '.join(PLATFORMS)} (or leave it empty: the GPU "
                        f"found at run time)")
    return PLATFORMS[name]


def precision_on(cfg, platform: Platform) -> str:
    """What autocast runs on that platform: runtime.choose_precision for its GPU generation (native bf16 from
    compute capability 8)."""
    from .runtime import choose_precision

    return choose_precision("cuda" if platform.gpus else "cpu", cfg.precision, (8, 0) if platform.bf16 else (7, 5))


# ====================================================================== models without weights
TEXT_ARCHITECTURES = {  # name: (transformers class prefix, configuration); what the hub's config.json says
    "klue/roberta-large": ("Roberta", dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=24,
                                           num_attention_heads=16, intermediate_size=4096, max_position_embeddings=514,
                                           type_vocab_size=1)),
    "e5-small-offline": ("XLMRoberta", dict(vocab_size=250037, hidden_size=384, num_hidden_layers=12,
                                            num_attention_heads=12, intermediate_size=1536, max_position_embeddings=514,
                                            pad_token_id=1)),
    "tiny-text": ("XLMRoberta", dict(vocab_size=260, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=514, pad_token_id=1)),
}
IMAGE_ARCHITECTURES = {"efficientnet-lite0-offline": "tf_efficientnet_lite0", "tiny-image": "tf_efficientnet_lite0"}


def text_architecture(name: str):
    """A transformers encoder of `name`'s shape with random (or, on the meta device, no) weights: a known name, or a
    local Hugging Face folder's config.json. Never downloads."""
    import transformers

    if name in TEXT_ARCHITECTURES:
        prefix, settings = TEXT_ARCHITECTURES[name]
        config = getattr(transformers, f"{prefix}Config")(**settings)
        return getattr(transformers, f"{prefix}Model")(config, add_pooling_layer=False)
    if (Path(name) / "config.json").is_file():
        config = transformers.AutoConfig.from_pretrained(name)
        try:
            return transformers.AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            return transformers.AutoModel.from_config(config)
    raise PlanError(f"text_model {name!r}: its shape is not known offline; use a local folder in Hugging Face format "
                    f"or one of {', '.join(TEXT_ARCHITECTURES)}")


def random_backbone(modality: str, cfg, trainable: bool = True):
    """The configuration's text or image encoder built from its configuration (random weights, on the current
    default device: the meta device counts parameters without memory): `build`'s `backbone` for build_model."""
    from .backbones import ImageBackbone, TextBackbone

    if modality == "text":
        return TextBackbone(cfg.text_model, text_architecture(cfg.text_model), None)
    import timm

    model = timm.create_model(IMAGE_ARCHITECTURES.get(cfg.image_model, cfg.image_model), pretrained=False,
                              num_classes=0)
    return ImageBackbone(cfg.image_model, model, (0.5,) * 3, (0.5,) * 3, cfg.image_size)


def build(kind: str, cfg, stage: str | None = None, device: str = "meta", seed: int = 0):
    """`models.build_model(kind, ...)` with encoders built from their configurations on `device` (default meta:
    shapes and parameter counts only). The same code path as a run, so the counts are the run's."""
    import torch

    from . import models

    with torch.device(device):
        return models.build_model(kind, cfg, SIZES, seed, stage, backbone=random_backbone)


def trained_parameters(kind: str, cfg, stage: str | None = None) -> tuple[int, int]:
    """(trained, total) parameters of `kind` as the configuration builds it."""
    model = build(kind, cfg, stage)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


# ====================================================================== per-item figures
@dataclass(frozen=True)
class Figures:
    """One model kind at one shape: parameters, bytes per item and FLOPs per item (`trace` says how)."""

    trained: int
    total: int
    act_half: float      # bytes autograd saves per training item, half-precision autocast
    act_fp32: float
    act_ckpt: float      # the same with gradient checkpointing (half)
    infer: float         # peak working bytes per item of a forward pass without gradients (half)
    flops: float         # forward + backward FLOPs per training item
    source: str = "traced"


def reads(kind: str, cfg, stage: str | None = None) -> str:
    """What a fit of `kind` reads: raw rows (`raw`: end to end, through the encoders it trains or, for the frozen
    kinds, runs), cached token states (`tokens`), pooled vectors (`pooled`: models.POOLED, kilobytes a row) or the
    text itself (`text`, TF-IDF)."""
    from .models import POOLED

    if kind == "text_tfidf":
        return "text"
    if cfg.schedule(kind, stage).training_mode == "end_to_end":
        return "raw"
    return "pooled" if all(key in POOLED for key in kinds.get(kind).inputs) else "tokens"


def signature(kind: str, cfg, stage: str | None = None) -> str:
    """Everything the per-item figures of `kind` depend on: the key of MEASURED."""
    parts = [kind, reads(kind, cfg, stage)]
    if "text" in kinds.get(kind).reads:
        parts += [f"{cfg.text_model}@{cfg.max_len}", f"top{cfg.text_top_layers}"]
        parts += [f"emb{int(cfg.train_word_embeddings)}"] if parts[1] == "raw" else []
    if kind == "text_finetuned":
        parts.append(f"{cfg.text_head}{cfg.layerwise_depths if cfg.text_head == 'layerwise' else ''}")
    if "image" in kinds.get(kind).reads:
        parts += [f"{cfg.image_model}@{cfg.image_size}", f"top{cfg.image_top_stages}"]
    if kind == "fusion_transformer":
        parts.append(f"fusion{cfg.fusion_width}x{cfg.fusion_layers}x{cfg.fusion_ff}/{cfg.fusion_text_pool}")
    return "|".join(parts)


FIGURES_FILE = Path(__file__).with_name("plan_figures.json")  # written by `--measure`: every shape the four
# platforms' plans and presets reach for the full profile, and the demo's


def _stored_figures() -> dict:
    """The traced figures of FIGURES_FILE by signature; none (all traced when asked for) if it is absent."""
    stored = read_json(FIGURES_FILE, {"figures": {}})["figures"]
    return {key: Figures(*values) for key, values in stored.items()}


def as_stored(fig: Figures) -> list:
    """A figure as FIGURES_FILE holds it: bytes to the byte, FLOPs to six digits."""
    return [fig.trained, fig.total, *(round(v) for v in (fig.act_half, fig.act_fp32, fig.act_ckpt, fig.infer)),
            float(f"{fig.flops:.6g}")]


MEASURED: dict = _stored_figures()  # and, once traced in this process, every other shape asked for


def figures(kind: str, cfg, stage: str | None = None) -> Figures:
    """Per-item figures: stored for the full profile's shapes, traced (seconds) for any other."""
    key = signature(kind, cfg, stage)
    if key not in MEASURED:
        MEASURED[key] = trace(kind, cfg, stage)
    return MEASURED[key]


# ---------------------------------------------------------------------- tracing with fake tensors
def _fake(model):
    """`model` with fake CPU tensors for weights (shapes only) and the mode they live in."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model.to_empty(device="cpu")
    return mode


def _batch(kind: str, cfg, stage, model, n: int) -> dict:
    """A training batch of `n` items as `kind` reads it (raw rows or cached states), full-length texts."""
    import torch

    ids = torch.randint(5, 200, (n, cfg.max_len))
    raw = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
           "pixels": torch.randn(n, 3, cfg.image_size, cfg.image_size)}
    if reads(kind, cfg, stage) == "raw":
        wanted = kinds.get(kind).reads
        out = {k: v for k, v in raw.items() if ("image" if k == "pixels" else "text") in wanted}
    else:
        out = _cached_inputs(kind, model, raw)
    out.update({level: torch.zeros(n, dtype=torch.long) for level in SIZES})
    return out


def _cached_inputs(kind: str, model, raw: dict) -> dict:
    """Cached states of `raw` as the cache stores them (fp16), computed by the model's own towers."""
    import torch

    from .models import ImageTower, TextTower, pool_image, pool_text

    text = next((m for m in model.modules() if isinstance(m, TextTower)), None)
    image = next((m for m in model.modules() if isinstance(m, ImageTower)), None)
    out, mask = {}, raw["attention_mask"].bool()
    with torch.no_grad():
        if text is not None:
            low = text.bottom(raw["input_ids"], raw["attention_mask"])
            final = text.top(low, raw["attention_mask"])
            out.update(text_bottom=low.half(), text_final=final.half(), text_mask=mask,
                       text_pooled=pool_text(final, mask))
        if image is not None:
            low = image.bottom(raw["pixels"])
            final = image.top(low)
            out.update(image_bottom=low.half(), image_final=final.half(), image_pooled=pool_image(final))
    return {k: out[k] for k in kinds.get(kind).inputs}


def _loss(out: dict):
    """A scalar from every head, so that backward reaches every trained weight."""
    return sum(v.float().mean() for v in out.values())


def _saved(model, batch: dict, precision: str, layers=()) -> tuple[int, int]:
    """Bytes autograd saves for backward over one forward pass (a tensor counted as often as it is saved), and the
    most that any one of `layers` saves."""
    import torch

    total, current, by_layer = 0, [None], {}

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        if current[0] is not None:
            by_layer[current[0]] = by_layer.get(current[0], 0) + t.numel() * t.element_size()
        return t

    hooks = [h for i, layer in enumerate(layers) for h in (
        layer.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__(0, i)),
        layer.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision in HALF):
            _loss(model(batch))
    finally:
        for h in hooks:
            h.remove()
    return total, max(by_layer.values(), default=0)


class _Live:
    """Peak bytes of tensors alive at once while a function runs (fake tensors: what eager execution would hold)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker.add(out, (args, kwargs))
                return out

        self.mode, self.now, self.peak = Mode(), 0, 0

    def add(self, out, inputs) -> None:
        import weakref

        import torch
        from torch.utils._pytree import tree_leaves

        seen = {id(x) for x in tree_leaves(inputs) if isinstance(x, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t._base is None and id(t) not in seen:
                size = t.untyped_storage().nbytes()
                self.now += size
                self.peak = max(self.peak, self.now)
                weakref.finalize(t, self._free, size)

    def _free(self, size: int) -> None:
        self.now -= size


def _inference_peak(model, batch: dict, precision: str) -> int:
    """The most bytes alive at once in one forward pass without gradients (the model's weights excluded)."""
    import torch

    live = _Live()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision in HALF), live.mode:
        out = model(batch)
        del out
    return live.peak


def _checkpoint_towers(model) -> list:
    """The towers that checkpoint their layers (models._maybe_checkpoint), as built."""
    return [tower for tower in model.modules() if getattr(tower, "checkpointing", False)]


def _checkpoint_layers(towers) -> list:
    """The layers gradient checkpointing recomputes: every layer of those towers."""
    from .models import TextTower

    return [layer for tower in towers
            for layer in (tower.encoder.encoder.layer if isinstance(tower, TextTower) else tower.model.blocks)]


def _checkpointed(model, batch: dict, layers) -> int:
    """Bytes kept per forward with gradient checkpointing: what autograd saves outside the checkpointed layers,
    plus each checkpointed layer's input (kept for its recomputation)."""
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: inputs.append(args[0].numel() * args[0].element_size()))
             for layer in layers]
    try:
        outside, _ = _saved(model, batch, "bf16")
    finally:
        for h in hooks:
            h.remove()
    return outside + sum(inputs)


def _flops(model, batch: dict) -> float:
    """FLOPs of one forward and backward (torch.utils.flop_counter: every matmul and attention counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        _loss(model(batch)).backward()
    return float(counter.get_total_flops())


def _switch(towers, on: bool) -> None:
    for tower in towers:
        tower.checkpointing = on


def trace(kind: str, cfg, stage: str | None = None) -> Figures:
    """Per-item figures of `kind` traced on fake tensors (seconds, no memory): saved bytes at 2 items minus 1
    (constant terms cancel) in half precision and fp32; with gradient checkpointing, what is saved outside the
    checkpointed layers plus their inputs plus the largest layer's recomputation; inference's peak of live
    tensors at 4 items minus 2; the FLOPs of one item's forward and backward."""
    model = build(kind, replace(cfg, grad_checkpointing=True), stage).train()
    towers = _checkpoint_towers(model)
    layers = _checkpoint_layers(towers)
    mode = _fake(model)
    with mode:
        batch = {n: _batch(kind, cfg, stage, model, n) for n in (1, 2, 4)}
        _switch(towers, False)
        (half2, layer2), (half1, layer1) = (_saved(model, batch[n], "bf16", layers) for n in (2, 1))
        act_fp32 = _saved(model, batch[2], "fp32")[0] - _saved(model, batch[1], "fp32")[0]
        flops = _flops(model, batch[1])
        _switch(towers, True)
        ckpt = _checkpointed(model, batch[2], layers) - _checkpointed(model, batch[1], layers) + (layer2 - layer1)
        model.eval()
        infer = (_inference_peak(model, batch[4], "bf16") - _inference_peak(model, batch[2], "bf16")) / 2
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return Figures(trained, total, float(half2 - half1), float(act_fp32), float(ckpt if layers else half2 - half1),
                   float(infer), flops)


# ====================================================================== what a run fits
@dataclass
class Fit:
    """One fit of one notebook (several units: folds x seeds, or 03's variants), with what it needs."""

    notebook: str
    kind: str
    what: str
    units: int = 1
    at_once: int = 1              # units trained at the same time, one per GPU
    processes: int = 1            # data-parallel processes of one unit
    reads: str = "raw"            # raw, tokens, pooled, text, encode, predict, gradcam
    trained_params: int = 0
    micro_batch: int = 0
    grad_accum: int = 1
    checkpointing: bool = False
    gpu_memory_gb: float = 0.0    # per GPU, the CUDA context included
    host_ram_gb: float = 0.0
    disk_gb: float = 0.0          # kept after the fit plus its largest transient (a last.pt rewritten beside the old)
    kept_gb: float = 0.0
    folder: str = "run"           # run (the run folder) or cache
    hours: float = 0.0
    stage: str | None = None
    rows: tuple = (0, 0, 0)       # training, validation and test rows per unit

    def public(self) -> dict:
        out = asdict(self)
        out.pop("stage")
        out["rows"] = list(self.rows)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def data_rows(cfg) -> tuple[int, int]:
    """Train and test rows of the run's data: its CSVs when present, a generated size, else the contest's."""
    if cfg.data_dir and (Path(cfg.data_dir) / "train.csv").is_file():
        return tuple(_csv_rows(Path(cfg.data_dir) / f"{split}.csv") for split in ("train", "test"))
    from .generate import SIZES as GENERATED

    return GENERATED.get(cfg.data_size, REAL_ROWS)


def _csv_rows(path: Path) -> int:
    """Records of a CSV (an overview may span lines), UTF-8 or CP949 as the loader reads them."""
    for encoding in ("utf-8-sig", "cp949"):
        try:
            with open(path, encoding=encoding, newline="") as fh:
                return sum(1 for _ in csv.reader(fh)) - 1
        except UnicodeDecodeError:
            continue
    return 0


@functools.lru_cache(maxsize=None)
def augmented_copies(train_rows: int) -> int:
    """03's augmented copies of a 20% validation split's training rows (augment.augmentation_probabilities over the
    real class sizes of data/dacon_tourism_taxonomy.csv: about 930 at the contest's size)."""
    with open(paths.TAXONOMY_CSV, encoding="utf-8") as fh:
        counts = [int(r["count"]) for r in csv.DictReader(fh) if r.get("count")]
    n = sum(counts)
    weight = [math.sqrt(n / c) for c in counts]
    low, span = min(weight), (max(weight) - min(weight)) or 1.0
    return int(0.8 * train_rows * sum(c * (w - low) / span for c, w in zip(counts, weight)) / n)


def kfold_members(cfg) -> list[str]:
    """06's members: the named ones, or for `auto` per family of the registry the one that costs most (the choice
    is made from 04/05's results, after this plan)."""
    if cfg.kfold_kinds is not None:
        return list(cfg.kfold_kinds)
    out = []
    for family in kinds.families():
        applies = kinds.names(family, cfg)
        whole = [k for k in applies if kinds.get(k).whole]  # trains whole encoders: the costliest of its family
        out += [(whole or list(applies))[-1]] if applies else []
    return out


def fits_of(cfg) -> list[Fit]:
    """Every fit of notebooks 02-07 in run order (01 trains nothing), with its rows per unit."""
    n, n_test = data_rows(cfg)
    k, seeds = cfg.n_folds, len(cfg.training_seeds)
    fold, split = (n * (k - 1) // k, n // k), (n - n // 5, n // 5)
    out = [Fit("02", kind, f"{k} folds (02's experts)", k, stage="kfold", rows=(*fold, n_test))
           for kind in cfg.label_expert_kinds]
    study = min(split[0], cfg.study_rows) if cfg.study_rows else split[0]  # 03 trains on a bounded sample
    copies = augmented_copies(study * 5 // 4)
    out.append(Fit("03", "encode", f"{copies} augmented copies encoded", rows=(0, 0, copies)))
    out.append(Fit("03", "late_fusion", f"{AUGMENT_VARIANTS} variants", AUGMENT_VARIANTS, stage="augmentation",
                   rows=(study + copies * 3 // AUGMENT_VARIANTS, split[1], 0)))  # 3 variants add the copies
    out += [Fit("04", kind, "validation split", rows=(*split, 0))
            for kind in kinds.names("text", cfg) + kinds.names("image", cfg)]
    out += [Fit("05", kind, "validation split", rows=(*split, 0)) for kind in kinds.names("multimodal", cfg)]
    students = 2 if cfg.distill else 1
    out += [Fit("06", kind, f"{k} folds x {seeds} seed(s)" + (" + students" if cfg.distill else ""),
                k * seeds * students, stage="kfold", rows=(fold[0], fold[1], n_test)) for kind in kfold_members(cfg)]
    out.append(Fit("06", "predict", "predictor check on the test rows",
                   rows=(0, 0, cfg.predictor_check_rows or n_test)))
    out.append(Fit("07", "gradcam", "Grad-CAM", rows=(0, 0, cfg.gradcam_explain + cfg.gradcam_calibrate)))
    return _with_cache_passes(out, cfg, n + n_test)


def _with_cache_passes(out: list[Fit], cfg, rows: int) -> list[Fit]:
    """An encoding pass before the first fit that reads each modality's cache (pooled vectors, or token states
    where some model trains on them: features.needs_token_states)."""
    done, result = set(), []
    for fit in out:
        if fit.kind in kinds.KINDS and reads(fit.kind, cfg, fit.stage) in ("pooled", "tokens"):
            for modality in sorted(kinds.get(fit.kind).reads - done):
                result.append(Fit(fit.notebook, "cache", f"{modality} cache, every row", reads=modality,
                                  folder="cache", rows=(0, 0, rows)))
                done.add(modality)
        result.append(fit)
    return result


# ---------------------------------------------------------------------- GPU measurements (benchmarks/gpu_check.sh)
RESULTS = paths.REPO_ROOT / "benchmarks" / "results"


def gpu_measurements(folder: Path | None = None) -> list[dict]:
    """Rows of every gpu_check CSV under benchmarks/results/ (newest last); none when no GPU has run it. Read once
    per process (`gpu_measurements.cache_clear()` to read again)."""
    return list(_read_measurements(str(folder or RESULTS)))


@functools.lru_cache(maxsize=None)
def _read_measurements(folder: str) -> tuple:
    rows = []
    for path in sorted(Path(folder).glob("gpu_check-*.csv"), key=lambda p: p.stat().st_mtime):
        with open(path, encoding="utf-8", newline="") as fh:
            rows += list(csv.DictReader(fh))
    return tuple(rows)


gpu_measurements.cache_clear = _read_measurements.cache_clear


def _measured(kind: str, phase: str, platform: Platform, checkpointing: bool | None = None) -> dict | None:
    """The newest GPU measurement of `kind` in `phase` (on the platform's GPU model for rates: `same_gpu`)."""
    found = None
    for row in gpu_measurements():
        if row.get("kind") != kind or row.get("phase") != phase or row.get("verdict") == "smoke":
            continue
        if checkpointing is not None and row.get("checkpointing", "").lower() != str(checkpointing).lower():
            continue
        found = {**row, "same_gpu": bool(platform.gpu) and platform.gpu in row.get("gpu", "")}
    return found


def _with_measurements(fig: Figures, kind: str, platform: Platform) -> Figures:
    """Per-item activation and inference bytes measured on a GPU replace the traced ones (any GPU: bytes per item
    do not depend on the card)."""
    changes = {}
    for ckpt, name in ((False, "act_half"), (True, "act_ckpt")):
        row = _measured(kind, "train", platform, ckpt)
        if row and row.get("act_mib_per_item"):
            changes[name] = float(row["act_mib_per_item"]) * 2**20
    row = _measured(kind, "predict", platform)
    if row and row.get("infer_mib_per_item"):
        changes["infer"] = float(row["infer_mib_per_item"]) * 2**20
    return replace(fig, **changes, source="GPU-measured") if changes else fig


def host_base_gb() -> float:
    """A notebook process's resident memory before any model: gpu_check's measurement, else HOST_BASE_GB."""
    row = next((r for r in reversed(gpu_measurements()) if r.get("phase") == "host" and r.get("peak_gb") and
                r.get("verdict") != "smoke"), None)
    return float(row["peak_gb"]) if row else HOST_BASE_GB


# ---------------------------------------------------------------------- costs
def _processes(cfg, platform: Platform) -> int:
    """Processes per training (distributed.processes_for on that platform): `processes`, or one per GPU."""
    return cfg.processes or max(1, platform.gpus)


def _workers(cfg, platform: Platform) -> int:
    """DataLoader workers per process (inputs.loader_workers' rule on that platform)."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return max(1, platform.cpu_cores // _processes(cfg, platform) - 1) if platform.gpus else 0


def _encoder_params(modality: str, cfg) -> int:
    """Parameters of the configuration's text or image encoder (built on the meta device, counted once)."""
    import torch

    key = ("encoder", modality, cfg.text_model if modality == "text" else cfg.image_model)
    if key not in MEASURED:
        with torch.device("meta"):
            MEASURED[key] = sum(p.numel() for p in random_backbone(modality, cfg).model.parameters())
    return MEASURED[key]


def _state_bytes(cfg, tokens: bool) -> dict[str, int]:
    """Bytes per row of each modality's cache entry: token states (bottom and final fp16, text mask) or one pooled
    float32 vector (features.pooled_features)."""
    import torch

    key = ("states", cfg.text_model, cfg.max_len, cfg.image_model, cfg.image_size, cfg.text_top_layers,
           cfg.image_top_stages)
    if key not in MEASURED:
        model = build("late_fusion", replace(cfg, training_mode="cached", schedules={}))
        with torch.no_grad():
            raw = {"input_ids": torch.ones(1, cfg.max_len, dtype=torch.long, device="meta"),
                   "attention_mask": torch.ones(1, cfg.max_len, dtype=torch.long, device="meta"),
                   "pixels": torch.zeros(1, 3, cfg.image_size, cfg.image_size, device="meta")}
            low_t = model.text.bottom(raw["input_ids"], raw["attention_mask"])
            low_i = model.image.bottom(raw["pixels"])
            final_i = model.image.top(low_i)
        MEASURED[key] = {"text": (2 * low_t.numel() * 2 + cfg.max_len, low_t.shape[-1] * 4),
                         "image": (low_i.numel() * 2 + final_i.numel() * 2, final_i.shape[-1] * 4)}
    return {m: v[0 if tokens else 1] for m, v in MEASURED[key].items()}


def _rates(fig: Figures, fit: Fit, cfg, platform: Platform, measured: bool = True) -> tuple[float, float]:
    """Training and inference items/s of one unit: FLOPs at the assumed utilisation (GPU-measured where the same
    GPU model ran gpu_check), bounded by the loader's decoding for raw images and by per-step overhead."""
    peak = max(platform.peak_tflops, 1e-3) * 1e12 * platform.mfu
    train = peak / max(fig.flops * (4 / 3 if fit.checkpointing else 1), 1.0)
    infer = peak / max(fig.flops / 3, 1.0)
    row = _measured(fit.kind, "train", platform, fit.checkpointing) if measured else None
    if row and row["same_gpu"] and row.get("items_per_s"):
        train = float(row["items_per_s"])
    if fit.reads == "raw" and "image" in kinds.get(fit.kind).reads:
        loader = max(1, _workers(cfg, platform)) * IMAGES_PER_CORE
        train, infer = min(train, loader), min(infer, loader)
    train = min(train, max(1, fit.micro_batch) / STEP_SECONDS) * (1 + (fit.processes - 1) * DDP_EFFICIENCY)
    return train, min(infer, VALIDATION_BATCH / STEP_SECONDS)


def _train_hours(fit: Fit, cfg, train_rate: float, infer_rate: float) -> float:
    """Every epoch of the schedule (early stopping can end a fit sooner), validation each epoch, then test rows."""
    s = cfg.schedule(fit.kind, fit.stage)
    train_rows, val_rows, test_rows = fit.rows
    effective = max(1, fit.micro_batch * fit.grad_accum)
    per_epoch = min(train_rows, s.steps_per_epoch * effective) if s.steps_per_epoch else train_rows
    epochs = max(s.epochs, math.ceil(s.min_steps / max(1, math.ceil(per_epoch / effective))))
    seconds = epochs * (per_epoch / train_rate + val_rows / infer_rate) + test_rows / infer_rate
    return fit.units * seconds / max(1, fit.at_once) / 3600


def _train_phases(fig: Figures, micro: int, ckpt: bool, precision: str, world: int) -> dict[str, float]:
    """Bytes on one GPU in each phase of a fit: forward and backward (weights, gradients, moments, autocast's half
    copies, activations), AdamW's step (its foreach temporaries), validation (weights and moments, an inference
    batch). The CUDA context comes on top."""
    half = precision in HALF
    trained, frozen = fig.trained, fig.total - fig.trained
    act = (fig.act_ckpt if ckpt else fig.act_half) if half else fig.act_fp32
    fixed = 4 * frozen + (BYTES_DDP * trained if world > 1 else 0)
    return {"forward": fixed + (BYTES_TRAINED - (0 if half else 2)) * trained + act * math.ceil(micro / world),
            "step": fixed + (16 + BYTES_STEP_EXTRA) * trained,
            "validation": fixed + 12 * trained + fig.infer * VALIDATION_BATCH}


def expected(kind: str, cfg, platform: Platform, processes: int = 1) -> dict:
    """What the plan expects of one single-model unit of `kind` (04/05) as `cfg` trains it, on `platform`, in
    `processes` data-parallel processes, from the traced figures alone (benchmarks/gpu_check.py compares its
    measurements with these): the allocator's peak per GPU in training and in validation (GB), training and
    inference items/s of the unit, activation and inference MiB per item."""
    fig = figures(kind, cfg)
    fit = Fit("05", kind, "check", micro_batch=cfg.batch_size, grad_accum=cfg.grad_accum, processes=processes,
              checkpointing=cfg.grad_checkpointing, reads=reads(kind, cfg))
    phases = _train_phases(fig, fit.micro_batch, fit.checkpointing, precision_on(cfg, platform), processes)
    train_rate, infer_rate = _rates(fig, fit, cfg, platform, measured=False)
    act = fig.act_ckpt if fit.checkpointing else fig.act_half
    return {"train_gb": max(phases["forward"], phases["step"]) / GB, "predict_gb": phases["validation"] / GB,
            "items_per_s": train_rate, "infer_per_s": infer_rate, "act_mib_per_item": act / 2**20,
            "infer_mib_per_item": fig.infer / 2**20, "trained_params": fig.trained}


def _encoder_figures(modality: str, cfg) -> Figures:
    """The frozen encoder's figures (a caching pass, the predictor's shared towers): its fine-tune read end to end."""
    raw = replace(cfg, training_mode="end_to_end", schedules={}, text_head="pooled", grad_checkpointing=False)
    return figures("text_finetuned" if modality == "text" else "image_finetuned", raw)


def _cost_trained(fit: Fit, cfg, platform: Platform) -> Fit:
    """A neural fit: its GPU memory at the configured micro-batch, host RAM, checkpoints and hours."""
    fig = _with_measurements(figures(fit.kind, cfg, fit.stage), fit.kind, platform)
    processes = _processes(cfg, platform)
    fit.reads = reads(fit.kind, cfg, fit.stage)
    fit.processes = min(processes, max(1, platform.gpus)) if fit.reads == "raw" and fit.stage != "kfold" else 1
    fit.at_once = min(processes, fit.units) if fit.stage == "kfold" else 1
    fit.trained_params, fit.micro_batch, fit.grad_accum = fig.trained, cfg.batch_size, cfg.grad_accum
    fit.checkpointing = cfg.grad_checkpointing and fit.reads == "raw"
    precision = precision_on(cfg, platform)
    device_bytes = max(_train_phases(fig, fit.micro_batch, fit.checkpointing, precision, fit.processes).values())
    fit.gpu_memory_gb = (device_bytes / GB + CUDA_CONTEXT_GB) if platform.gpus else 0.0
    held = sum(4 * _encoder_params(m, cfg) for m in kinds.get(fit.kind).reads) if fit.reads == "raw" else 0
    per_process = host_base_gb() * GB + held + max(8 * fig.total, BYTES_LAST * fig.trained) + \
        (_workers(cfg, platform) * WORKER_GB * GB if fit.reads == "raw" else 0)
    per_process += 0 if platform.gpus else device_bytes
    fit.host_ram_gb = per_process * max(fit.processes, fit.at_once) / GB
    fit.kept_gb = fit.units * BYTES_BEST * fig.trained / GB
    fit.disk_gb = fit.kept_gb + fit.at_once * 2 * BYTES_LAST * fig.trained / GB
    fit.hours = _train_hours(fit, cfg, *_rates(fig, fit, cfg, platform))
    return fit


def _cost_tfidf(fit: Fit, cfg, platform: Platform) -> Fit:
    """A TF-IDF fit: the CPU only."""
    fit.reads, fit.at_once = "text", 1
    fit.host_ram_gb = host_base_gb() + 1.0  # sparse TF-IDF matrices of the real data: ASSUMED
    fit.hours = fit.units * fit.rows[0] / 1000 * TFIDF_SECONDS_PER_1K / 3600
    return fit


def _cost_cache(fit: Fit, cfg, platform: Platform) -> Fit:
    """An encoding pass: the frozen encoder over every row in inference, written in 1,024-row chunks."""
    from .features import CHUNK_ROWS, needs_token_states

    modality, rows = fit.reads, fit.rows[2]
    fig = _encoder_figures(modality, cfg)
    per_row = _state_bytes(cfg, needs_token_states(cfg, modality))[modality]
    token_row = _state_bytes(cfg, True)[modality]
    fit.gpu_memory_gb = (4 * fig.total + fig.infer * ENCODE_BATCH[modality]) / GB + CUDA_CONTEXT_GB
    fit.gpu_memory_gb *= bool(platform.gpus)
    fit.host_ram_gb = host_base_gb() + (4 * fig.total + CHUNK_ROWS * token_row) / GB
    fit.kept_gb = fit.disk_gb = rows * per_row / GB
    rate = _encode_rate(fig, modality, cfg, platform)
    fit.hours = rows / rate / 3600
    return fit


def _encode_rate(fig: Figures, modality: str, cfg, platform: Platform) -> float:
    """Items/s of a caching pass: the encoder's forward, photos decoded in the loader's workers."""
    rate = max(platform.peak_tflops, 1e-3) * 1e12 * platform.mfu / max(fig.flops / 3, 1.0)
    if modality == "image":
        rate = min(rate, max(1, _workers(cfg, platform)) * IMAGES_PER_CORE)
    return rate


def _cost_encode_copies(fit: Fit, cfg, platform: Platform) -> Fit:
    """03: the augmented copies' texts and photos encoded into memory (features.encode_texts / encode_images)."""
    copies = fit.rows[2]
    text, image = _encoder_figures("text", cfg), _encoder_figures("image", cfg)
    states = _state_bytes(cfg, True)
    fit.reads = "encode"
    fit.gpu_memory_gb = bool(platform.gpus) * (CUDA_CONTEXT_GB + max(
        4 * text.total + text.infer * ENCODE_BATCH["text"], 4 * image.total + image.infer * ENCODE_BATCH["image"]) / GB)
    fit.host_ram_gb = host_base_gb() + (4 * (text.total + image.total) + copies * sum(states.values())) / GB
    fit.hours = copies * (1 / _encode_rate(text, "text", cfg, platform) +
                          1 / _encode_rate(image, "image", cfg, platform)) / 3600
    return fit


def _cost_predict(fit: Fit, cfg, platform: Platform) -> Fit:
    """06's predictor over the test rows (utils/predict.py): every member's units held on the host in half
    precision on a GPU machine (the shared frozen encoders in fp32), one member's units at a time on the device;
    every unit of an end-to-end member runs its own encoders."""
    units = cfg.n_folds * len(cfg.training_seeds)
    width = 2 if platform.gpus else 4
    members = [(figures(kind, cfg, "kfold"), reads(kind, cfg, "kfold")) for kind in kfold_members(cfg)
               if kind != "text_tfidf"]
    shared = sum(_encoder_params(m, cfg) for m in ("text", "image"))
    own = [units * width * (fig.total if mode == "raw" else fig.trained) for fig, mode in members]
    on_device = [o + fig.infer * PREDICT_BATCH for o, (fig, _) in zip(own, members)]
    fit.reads = "predict"
    fit.gpu_memory_gb = bool(platform.gpus) * ((width * shared + max(on_device, default=0)) / GB + CUDA_CONTEXT_GB)
    building = max((8 * fig.total for fig, _ in members), default=0)  # one unit built in fp32, then cast
    fit.host_ram_gb = host_base_gb() + (4 * shared + sum(own) + building) / GB
    flops = sum(units * fig.flops / 3 for fig, mode in members if mode == "raw") + \
        sum(_encoder_figures(m, cfg).flops / 3 for m in ("text", "image"))
    fit.hours = fit.rows[2] * flops / (max(platform.peak_tflops, 1e-3) * 1e12 * platform.mfu) / 3600
    return fit


def _cost_gradcam(fit: Fit, cfg, platform: Platform) -> Fit:
    """07: the fusion model in fp32 on the device, gradients of the pixels through its image tower."""
    fusion, image = figures("fusion_transformer", cfg), _encoder_figures("image", cfg)
    fit.reads = "gradcam"
    fit.gpu_memory_gb = bool(platform.gpus) * ((4 * fusion.total + 1.2 * image.act_fp32 * GRADCAM_BATCH) / GB +
                                               CUDA_CONTEXT_GB)
    fit.host_ram_gb = host_base_gb() + 8 * fusion.total / GB
    fit.hours = fit.rows[2] * 8 * fusion.flops / (max(platform.peak_tflops, 1e-3) * 1e12 * platform.mfu) / 3600
    return fit


def cost(fit: Fit, cfg, platform: Platform) -> Fit:
    """`fit` with its needs filled in for `cfg` on `platform`."""
    handler = {"text_tfidf": _cost_tfidf, "cache": _cost_cache, "encode": _cost_encode_copies,
               "predict": _cost_predict, "gradcam": _cost_gradcam}.get(fit.kind, _cost_trained)
    return handler(fit, cfg, platform)


# ====================================================================== the plan
@dataclass
class Plan:
    """Every fit of a run on one platform, and the run's totals."""

    platform: Platform
    precision: str
    fits: list[Fit]
    hours: float
    disk_gb: float                 # the most the run has on disk at once: run folder and cache
    folders_gb: dict               # kept at the end: run (checkpoints), cache
    disks_gb: dict                 # the most at once on each disk: run (with the cache unless it has its own), cache
    sessions: int                  # platform sessions the hours take (resumed between them); 0: no limit
    settings: dict = field(default_factory=dict)   # what adapt/preset changed, as --set KEY=VALUE
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        def rounded(d):
            return {k: round(v, 2) for k, v in d.items()}

        return {"platform": asdict(self.platform), "precision": self.precision,
                "fits": [f.public() for f in self.fits], "disk_gb": round(self.disk_gb, 2),
                "hours": round(self.hours, 2), "folders_gb": rounded(self.folders_gb),
                "disks_gb": rounded(self.disks_gb), "sessions": self.sessions, "settings": self.settings,
                "notes": self.notes}


def cache_apart(cfg, platform: Platform) -> bool:
    """Whether the cache sits on a disk of its own (the platform's cache folder)."""
    return bool(platform.cache_disk_gb and platform.cache_dir and cfg.cache_dir and
                Path(cfg.cache_dir) == Path(platform.cache_dir))


def _disk_peaks(fits: list[Fit], apart: bool) -> dict[str, float]:
    """The most each disk holds at once, fit by fit in run order: what earlier fits kept plus this fit's own."""
    peaks, kept = {"run": 0.0, "cache": 0.0}, {"run": 0.0, "cache": 0.0}
    for fit in fits:
        disk = "cache" if fit.folder == "cache" and apart else "run"
        peaks[disk] = max(peaks[disk], kept[disk] + fit.disk_gb)
        kept[disk] += fit.kept_gb
    return peaks


def make_plan(cfg, platform: Platform | str | None = None) -> Plan:
    """What each fit of `cfg` needs on `platform` (a Platform, a preset's name, or None: cfg.platform, else the
    GPU found here), as configured: `adapt` first for what a run would do."""
    if not isinstance(platform, Platform):
        platform = platform_named(platform or cfg.platform, cfg.output_dir or None)
    fits = [cost(fit, cfg, platform) for fit in fits_of(cfg)]
    folders = {name: sum(f.kept_gb for f in fits if f.folder == name) for name in ("run", "cache")}
    disks = _disk_peaks(fits, cache_apart(cfg, platform))
    hours = sum(f.hours for f in fits)
    sessions = math.ceil(hours / (platform.session_hours * 0.9)) if platform.session_hours else 0
    notes = [] if not platform.disk_note else [platform.disk_note]
    if platform.quota_hours and hours > platform.quota_hours:
        notes.append(f"{hours:.1f} h is more than the platform's {platform.quota_hours:.0f} GPU hours a week: the run "
                     f"resumes in the next week")
    return Plan(platform, precision_on(cfg, platform), fits, hours, sum(disks.values()), folders, disks, sessions,
                notes=notes)


def usable(platform: Platform) -> dict[str, float]:
    """What a plan may fill: GPU memory per card, host RAM, each disk (USABLE of each)."""
    return {"gpu": platform.gpu_memory_gb * USABLE, "ram": platform.host_ram_gb * USABLE,
            "run": platform.disk_gb * USABLE, "cache": (platform.cache_disk_gb or platform.disk_gb) * USABLE}


def overflows(plan: Plan) -> list[tuple[Fit | None, str, float, float]]:
    """(fit, resource, needed, available) for everything over the platform's limits (fit None: the run's disk at
    its fullest); resource: gpu, ram, run (the run folder's disk) or cache (the cache's own disk)."""
    limit, out = usable(plan.platform), []
    for fit in plan.fits:
        if plan.platform.gpus and fit.gpu_memory_gb > limit["gpu"]:
            out.append((fit, "gpu", fit.gpu_memory_gb, limit["gpu"]))
        if fit.host_ram_gb > limit["ram"]:
            out.append((fit, "ram", fit.host_ram_gb, limit["ram"]))
    out += [(None, disk, peak, limit[disk]) for disk, peak in plan.disks_gb.items() if peak > limit[disk]]
    return out


# ====================================================================== adapting, refusing, presets
def _platform(platform, cfg) -> Platform:
    return platform if isinstance(platform, Platform) else platform_named(platform or cfg.platform,
                                                                         cfg.output_dir or None)


def _micro_batches(cfg) -> list[tuple[int, bool]]:
    """(micro-batch, checkpointing) in the order tried: no checkpointing down to MIN_MICRO_BATCH, then
    checkpointing from the configured micro-batch down; each divides the effective batch."""
    effective = cfg.batch_size * cfg.grad_accum
    sizes = [b for b in range(cfg.batch_size, 0, -1) if effective % b == 0]
    plain = [(b, False) for b in sizes if b >= min(MIN_MICRO_BATCH, cfg.batch_size)]
    return plain + [(b, True) for b in sizes] + [(b, False) for b in sizes if b < MIN_MICRO_BATCH]


TRAINING_KINDS = ("text_tfidf", "cache", "encode", "predict", "gradcam")  # fits that are not training units


def _training_fits(trial, platform: Platform) -> tuple[bool, bool]:
    """Whether every training fit fits the card with `trial`, and whether it fits the RAM and the disk (its own
    last.pt rewrites) as well."""
    limit, gpu, rest = usable(platform), True, True
    for fit in fits_of(trial):
        if fit.kind in TRAINING_KINDS:
            continue
        fit = _cost_trained(fit, trial, platform)
        gpu = gpu and fit.gpu_memory_gb <= limit["gpu"]
        rest = rest and fit.host_ram_gb <= limit["ram"] and fit.disk_gb - fit.kept_gb <= limit["run"]
    return gpu, rest


def _batching(cfg, platform: Platform):
    """The first configuration whose training fits fit the card: the configured processes, then one process; within
    each, the micro-batches of `_micro_batches`; one process where more would not fit the RAM or the disk either.
    None when even micro-batch 1 with checkpointing does not fit the card."""
    effective, found = cfg.batch_size * cfg.grad_accum, None
    for processes in [cfg.processes] + ([1] if _processes(cfg, platform) > 1 else []):
        for micro, ckpt in _micro_batches(cfg):
            trial = replace(cfg, batch_size=micro, grad_accum=effective // micro, processes=processes,
                            grad_checkpointing=ckpt or cfg.grad_checkpointing)
            gpu, rest = _training_fits(trial, platform)
            if gpu:
                found = found or trial
                if rest:
                    return trial
                break  # a smaller micro-batch changes neither RAM nor disk: try fewer processes
    return found


def adapt(cfg, platform=None) -> tuple:
    """`cfg` changed only where the training stays the same, so that every fit fits `platform`: the micro-batch
    (gradient accumulation keeps the effective batch), gradient checkpointing, one process per model where two
    would not fit, a checkpoint every 30 minutes and a clean stop an hour before a session ends, the cache on the
    platform's local disk. Returns the new configuration and one note per change (`KEY=VALUE: why`)."""
    platform = _platform(platform, cfg)
    if not platform.gpus:
        return cfg, []
    new = _batching(cfg, platform) or cfg
    if new.num_workers != 0 and not _training_fits(new, platform)[1] and \
            _training_fits(replace(new, num_workers=0), platform)[1]:
        new = replace(new, num_workers=0)
    if platform.session_hours:
        new = replace(new, checkpoint_minutes=new.checkpoint_minutes or 30.0,
                      time_budget_hours=new.time_budget_hours or platform.session_hours - 1)
    if platform.cache_dir and not cfg.cache_dir:
        new = replace(new, cache_dir=platform.cache_dir)
    return new, _notes(cfg, new, platform)


WHY = {"batch_size": "micro-batch that fits the card ({gpu:.0f} GB), gradient accumulation keeps the effective batch",
       "grad_accum": "batches per optimiser step: effective batch {eff} as configured",
       "grad_checkpointing": "recompute encoder activations in backward: a third more compute, a fifth of the memory",
       "processes": "one process per model: two would each hold DDP's gradient buckets or a second last.pt",
       "checkpoint_minutes": "a session that ends loses at most this much training (resumed exactly)",
       "time_budget_hours": "06 stops cleanly before the {session:.0f} h session ends; rerun to continue",
       "num_workers": "photos decoded in the training process: a loader worker's RAM (the same batches: an "
                      "item's augmentation is seeded by its row and epoch)",
       "cache_dir": "the content-keyed cache on the session's local disk (rebuilt when it is gone)"}


def _notes(old, new, platform: Platform) -> list[str]:
    values = {"gpu": platform.gpu_memory_gb, "eff": new.batch_size * new.grad_accum, "session": platform.session_hours}
    return [f"{key}={_text(getattr(new, key))}: {why.format(**values)}" for key, why in WHY.items()
            if getattr(old, key) != getattr(new, key)]


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def changed_settings(old, new) -> dict:
    """The `--set` pairs that turn `old` into `new` (plain keys and schedule scopes)."""
    out = {k: _text(getattr(new, k)) for k in asdict(new) if k != "schedules" and getattr(old, k) != getattr(new, k)}
    for scope, values in new.schedules.items():
        for name, value in values.items():
            if old.schedules.get(scope, {}).get(name) != value:
                out[f"{scope}.{name}"] = _text(value)
    return out


# What a preset gives up, in this order, until the run fits its platform (the recipe's most expensive parts that
# cost it least first; the 9th place measured +0.001 private F1 for distillation, and seeds beyond one add less
# than folds and epochs do).
PRESET_STEPS = (
    ({"distill": False}, "distillation (students on the test rows' soft labels, 9th place: +0.001 private F1)"),
    ({"kfold_seeds": "0,1"}, "K-fold seeds: 2 per fold instead of {seeds}"),
    ({"kfold_seeds": "0"}, "K-fold seeds: one per fold"),
    ({"train_word_embeddings": False}, "training RoBERTa's token embeddings (32.8 M fewer weights in each checkpoint)"),
    ({"kfold_models": "text_finetuned,fusion_transformer"}, "06's image member (the fusion model reads the photos)"),
    ({"text_finetuned.epochs": 10}, "text fine-tune: 10 epochs instead of {text_epochs} (its rate halves every 10)"),
    ({"fusion_transformer.epochs": 5}, "fusion transformer: 5 epochs instead of {fusion_epochs}"),
    ({"n_folds": 3}, "3 folds instead of {folds} (02's experts, 06's members)"),
    ({"kfold_models": "text_finetuned"}, "06's fusion member (the text model alone, with 04/05's single models)"),
    ({"fusion_transformer.training_mode": "cached"},
     "the fusion transformer end to end: it trains on the frozen encoders' cached token states"),
)


def _fits_platform(cfg, platform: Platform) -> bool:
    return _excess(cfg, platform) == 0


def _excess(cfg, platform: Platform) -> float:
    """How far `cfg` is from fitting: the overflows' relative excess plus the hours' excess over the budget."""
    plan = make_plan(cfg, platform)
    over = sum(need / have - 1 for _, _, need, have in overflows(plan))
    return over + (max(0.0, plan.hours / platform.budget_hours - 1) if platform.budget_hours else 0.0)


_PRESETS: dict = {}


def preset(cfg, platform=None, keep=()) -> tuple:
    """`cfg` made to fit `platform` (`--set platform=NAME`): adapted, and where that is not enough, parts of the
    recipe given up (PRESET_STEPS in order, least costly first, each where it brings the run closer; then any
    step that later ones made unneeded is restored), until every fit, the run's disk and the platform's hour
    budget (Platform.budget_hours) fit. Keys in `keep` (set by the user) are never changed. Returns the
    configuration and notes: what adapt changed, then `gave up: ...` per step."""
    platform = _platform(platform, cfg)
    key = (repr(cfg), platform, tuple(sorted(keep)))
    if key not in _PRESETS:
        _PRESETS[key] = _preset(cfg, platform, keep)
    return _PRESETS[key]


def _preset(cfg, platform: Platform, keep) -> tuple:
    base = replace(cfg, platform=platform.name if platform.name in PLATFORMS else cfg.platform)
    steps = [step for step in PRESET_STEPS if not set(step[0]) & set(keep)]
    taken = _pruned(base, platform, _greedy(base, platform, steps))
    new, notes = adapt(_applied(base, taken), platform)
    values = {"seeds": len(cfg.training_seeds), "folds": cfg.n_folds,
              "text_epochs": cfg.schedule("text_finetuned").epochs,
              "fusion_epochs": cfg.schedule("fusion_transformer").epochs}
    notes += [f"gave up: {why.format(**values)} ({_pairs(settings)})" for settings, why in taken]
    if not _fits_platform(new, platform):
        notes.append(f"does not fit {platform.name} even so: see the problems")
    return new, notes


def _applied(cfg, steps) -> object:
    from .config import apply_settings

    for settings, _ in steps:
        cfg = apply_settings(cfg, settings)
    return cfg


def _distance(base, steps, platform: Platform) -> float:
    return _excess(adapt(_applied(base, steps), platform)[0], platform)


def _greedy(base, platform: Platform, steps) -> list:
    """PRESET_STEPS in order, each taken where it brings the run closer to fitting, until it fits."""
    taken, now = [], _distance(base, [], platform)
    for step in steps:
        if now == 0:
            break
        if _already(_applied(base, taken), step[0]):
            continue
        closer = _distance(base, taken + [step], platform)
        if closer < now - 1e-9:
            taken, now = taken + [step], closer
    return taken


def _pruned(base, platform: Platform, taken: list) -> list:
    """`taken` without the steps that the later ones made unneeded (the latest kept: it made the run fit)."""
    for step in list(reversed(taken[:-1])):
        trial = [s for s in taken if s is not step]
        if _distance(base, trial, platform) == 0:
            taken = trial
    return taken


def _already(cfg, settings: dict) -> bool:
    from .config import apply_settings

    return apply_settings(cfg, settings) == cfg


def _pairs(settings: dict) -> str:
    return " ".join(f"--set {k}={_text(v)}" for k, v in settings.items())


RESOURCE = {"gpu": "GPU memory", "ram": "host RAM", "run": "disk for the run folder", "cache": "disk for the cache"}


def problems(cfg, platform=None, free_disk: dict | None = None) -> list[str]:
    """What cannot fit `platform` as configured, one sentence each, naming the `--set` that would make it fit
    (adapt's when that suffices, else the preset's, which says what it gives up). `free_disk`: {folder: free GB}
    measured where the run writes (the run folder and the cache; a folder may be a parent of them)."""
    platform = _platform(platform, cfg)
    plan = make_plan(cfg, platform)
    out = [_problem(fit, resource, need, have, cfg, platform) for fit, resource, need, have in overflows(plan)
           if fit is not None or free_disk is None]
    out = [_shorter(text, out[:i]) for i, text in enumerate(out)]
    out += _disk_problems(plan, cfg, free_disk) if free_disk is not None else []
    if platform.session_hours and not cfg.checkpoint_minutes and any(
            f.hours / max(1, f.units) * f.at_once > platform.session_hours for f in plan.fits):
        out.append(f"a fit takes longer than a {platform.session_hours:.0f} h session and nothing saves it within "
                   f"its epochs: --set checkpoint_minutes=30 (resumes exactly where it stopped)")
    return out


REMEDY_KEYS = {"gpu": ("batch_size", "grad_accum", "grad_checkpointing", "processes"),
               "ram": ("num_workers", "processes"), "run": ("processes",), "cache": ("cache_dir",)}


def _shorter(text: str, before: list[str]) -> str:
    """A remedy said in full once; later problems with the same one refer to it."""
    head, _, remedy = text.partition(" usable: ")
    if any(b.endswith(remedy) for b in before) and "; it gives up" in remedy:
        return f"{head} usable: {remedy.split(',')[0]} (as above)"
    return text


def _remedy(cfg, platform: Platform, fit: Fit | None, resource: str) -> str:
    """The `--set` pairs that make `fit` (None: the run) fit: adapt's alone where they suffice, else the preset's
    with what it gives up."""
    adapted, _ = adapt(cfg, platform)
    if fit is not None and _fit_ok(adapted, platform, fit):
        changes = changed_settings(cfg, adapted)
        return _pairs({k: v for k, v in changes.items() if k in REMEDY_KEYS[resource]} or changes)
    fitted, notes = preset(cfg, platform)
    if not _fits_platform(fitted, platform):
        return "no setting makes it fit this platform: a GPU with more memory, more RAM or disk"
    gave = [n.split(" (--set")[0].removeprefix("gave up: ") for n in notes if n.startswith("gave up")]
    changes = {k: v for k, v in changed_settings(cfg, fitted).items() if k != "platform"}
    head = f"--set platform={platform.name}, which sets" if platform.name in PLATFORMS else "--set"
    return f"{head} {_pairs(changes).replace('--set ', '')}; it gives up: {'; '.join(gave) or 'nothing'}"


def _fit_ok(cfg, platform: Platform, fit: Fit) -> bool:
    same = (fit.notebook, fit.kind, fit.what)
    return not any(f is not None and (f.notebook, f.kind, f.what) == same
                   for f, *_ in overflows(make_plan(cfg, platform)))


def _problem(fit: Fit | None, resource: str, need: float, have: float, cfg, platform: Platform) -> str:
    what = "the run at its fullest" if fit is None else f"{fit.notebook} {fit.kind} ({fit.what})"
    extra = ""
    if fit is not None and fit.kind not in TRAINING_KINDS and resource == "gpu":
        extra = f" at micro-batch {fit.micro_batch}{' with checkpointing' if fit.checkpointing else ''}"
    return (f"{what} needs {need:.1f} GB of {RESOURCE[resource]}{extra}; {platform.name} has {have:.1f} GB usable: "
            f"{_remedy(cfg, platform, fit, resource)}")


def run_folders(cfg) -> dict[str, Path]:
    """Where the run writes: its run folder (checkpoints) and the cache."""
    output = Path(cfg.output_dir).expanduser() if cfg.output_dir else paths.OUTPUTS
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else output / "cache"
    return {"run": output / (cfg.run_name or "<run>"), "cache": cache}


def _disk_problems(plan: Plan, cfg, free_disk: dict) -> list[str]:
    """Each folder's need against the free space measured on its disk (folders on one disk share it)."""
    need = {"run": _disk_peaks([f for f in plan.fits if f.folder == "run"], False)["run"],
            "cache": plan.folders_gb["cache"]}
    disks: dict[str, list[str]] = {}
    for name, folder in run_folders(cfg).items():
        key = max((k for k in free_disk if _under(folder, k)), key=lambda k: len(str(k)), default=None)
        if key is not None:
            disks.setdefault(key, []).append(name)
    out = []
    for key, names in disks.items():
        needed, free = sum(need[n] for n in names), float(free_disk[key])
        if needed > free * USABLE:
            out += [_disk_message(name, run_folders(cfg)[name], needed, free, plan, cfg) for name in names
                    if need[name] > 0]
    return out


def _under(folder: Path, key) -> bool:
    folder, key = Path(folder).resolve(), Path(key).expanduser().resolve()
    return folder == key or key in folder.parents


def _disk_message(name: str, folder: Path, needed: float, free: float, plan: Plan, cfg) -> str:
    if name == "cache":
        return (f"the cache folder {folder} needs {needed:.1f} GB on a disk with {free:.1f} GB free: "
                f"--set cache_dir=PATH on a disk with {needed / USABLE:.1f} GB free")
    fix = f"--set output_dir=PATH (./run_all.sh --output-dir PATH) on a disk with {needed / USABLE:.1f} GB free"
    return (f"the run folder {folder} needs {needed:.1f} GB (checkpoints; a last.pt is rewritten beside the old one) "
            f"on a disk with {free:.1f} GB free: {fix}, or {_remedy(cfg, plan.platform, None, 'run')}")


def prepare(cfg, free_disk: dict | None = None, keep=()) -> tuple:
    """What a run does before its first notebook: with `platform` set, its preset (adapted, and what it gives up);
    otherwise the GPU found here, adapted. Returns (configuration, notes, problems): the run refuses to start
    while problems remain."""
    if cfg.platform:
        new, notes = preset(cfg, cfg.platform, keep)
    else:
        new, notes = adapt(cfg, detect_platform(cfg.output_dir or None))
    platform = _platform(None, new)
    return new, notes, problems(new, platform, free_disk)


# ====================================================================== the command line
def summary(plan: Plan, problems_found: list[str]) -> str:
    """The plan as text: the platform, what changed, one line per fit, the totals, the problems."""
    p = plan.platform
    session = f"sessions of {p.session_hours:g} h" if p.session_hours else "no session limit"
    lines = [f"== {p.name}: {p.gpus} x {p.gpu or 'no GPU'} {p.gpu_memory_gb:g} GB, RAM {p.host_ram_gb:g} GB, disk "
             f"{p.disk_gb:g} GB, {session}; precision {plan.precision}"]
    lines += [f"  {note}" for note in plan.notes]
    lines.append(f"  {'nb':<3}{'kind':<19}{'what':<34}{'trained':>9}{'batch':>9}{'GPU GB':>8}{'RAM GB':>8}"
                 f"{'disk GB':>9}{'hours':>8}")
    for f in plan.fits:
        batch = f"{f.micro_batch}x{f.grad_accum}{'c' if f.checkpointing else ''}" if f.micro_batch else "-"
        lines.append(f"  {f.notebook:<3}{f.kind:<19}{f.what[:33]:<34}{f.trained_params / 1e6:>8.1f}M{batch:>9}"
                     f"{f.gpu_memory_gb:>8.1f}{f.host_ram_gb:>8.1f}{f.disk_gb:>9.1f}{f.hours:>8.2f}")
    sessions = f", {plan.sessions} session(s) of {p.session_hours:g} h" if plan.sessions else ""
    own = " on its own disk" if plan.disks_gb["cache"] else ""
    lines.append(f"  total: {plan.hours:.1f} h{sessions}; disk at its fullest {plan.disk_gb:.1f} GB (kept at the end: "
                 f"run folder {plan.folders_gb['run']:.1f}, cache {plan.folders_gb['cache']:.2f}{own}; the rest: a "
                 f"last.pt rewritten beside the old)")
    lines += [f"  PROBLEM: {text}" for text in problems_found] or ["  fits: nothing to refuse"]
    return "\n".join(lines)


def plan_for(cfg, name: str, mode: str = "preset") -> tuple[Plan, list[str]]:
    """The plan a run of `cfg` follows on platform `name`: with its preset (default), adapted only, or as is."""
    platform = platform_named(name, cfg.output_dir or None)
    if mode == "preset":
        new, notes = preset(cfg, platform)
    elif mode == "adapt":
        new, notes = adapt(cfg, platform)
    else:
        new, notes = cfg, []
    plan = make_plan(new, platform)
    plan.settings, plan.notes = changed_settings(cfg, new), notes + plan.notes
    return plan, problems(new, platform)


def _measure(cfg) -> int:
    """Trace every figure the configuration's plans use on the four platforms, presets included, and write them
    into FIGURES_FILE beside the other profiles' (rounded as stored)."""
    for key in [k for k in MEASURED if isinstance(k, str)]:
        del MEASURED[key]
    _PRESETS.clear()
    for name in PLATFORMS:
        for mode in ("as-is", "adapt", "preset"):
            plan_for(cfg, name, mode)
    stored = read_json(FIGURES_FILE, {"figures": {}})
    for key, fig in MEASURED.items():
        if isinstance(key, str):
            stored["figures"][key] = as_stored(fig)
            print(key, stored["figures"][key])
    stored["figures"] = dict(sorted(stored["figures"].items()))
    write_json(stored, FIGURES_FILE)
    print(f"wrote {FIGURES_FILE}")
    return 0


def main(argv=None) -> int:
    from .config import ConfigError, build, parse_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--platform", default=None, help=f"{', '.join(PLATFORMS)}, all, or detect (default: the "
                                                         f"GPU found here, else all)")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--mode", choices=("preset", "adapt", "as-is"), default="preset",
                        help="preset: the platform preset (--set platform=NAME); adapt: only what keeps the training; "
                             "as-is: the configuration unchanged")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", action="store_true", help="trace the per-item figures and store them")
    args = parser.parse_args(argv)
    try:
        data = {"data_dir": args.data_dir} if args.data_dir else {}
        cfg = build(args.profile, {**parse_settings(args.sets), **data})
        if args.measure:
            return _measure(cfg)
        names = _platform_names(args.platform or cfg.platform)
        plans = [plan_for(cfg, name, args.mode) for name in names]
    except (ConfigError, PlanError) as exc:
        print(f"utils.plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = [{**plan.to_json(), "problems": found} for plan, found in plans]
        print(json.dumps(out[0] if len(out) == 1 else {"plans": out}, ensure_ascii=False, indent=1))
    else:
        print("\n\n".join(summary(plan, found) for plan, found in plans))
    return 0


def _platform_names(name: str | None) -> list[str]:
    import torch

    if name == "all" or (not name and not torch.cuda.is_available()):
        if not name:
            print("no GPU here: the plan for each preset (--platform NAME for one)", file=sys.stderr)
        return list(PLATFORMS)
    return [name or "detect"]


if __name__ == "__main__":
    sys.exit(main())


# ====================================================================== before each notebook
def _size_gb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / GB if folder.is_dir() else 0.0


def _checkpoint_folders(notebook: str, fit_kinds: list[str]) -> set[str]:
    """The folders under the run's checkpoints/ that a notebook's fits write (what a rerun finds there already)."""
    return {"02": {"label_fixing"}, "03": {"augmentation"}, "06": {"kfold", "distill"}}.get(
        notebook, {kind for kind in fit_kinds if kind in kinds.KINDS})


def notebook_disk_needs(cfg) -> dict:
    """Per notebook, the GB its fits write into the run folder and the cache, and its fits' kinds: the plan's, kept
    in the run folder (`disk_plan.json`, keyed by the configuration and the data's rows), so that the check before
    each notebook reads a file instead of planning again."""
    path = Path(cfg.output_dir) / cfg.run_name / "disk_plan.json"
    key = json.dumps({"cfg": cfg.to_dict(), "rows": data_rows(cfg)}, sort_keys=True, default=str)
    memo = read_json(path)
    if memo and memo.get("key") == key:
        return memo["needs"]
    needs: dict = {}
    for fit in make_plan(cfg).fits:
        entry = needs.setdefault(fit.notebook, {"run": 0.0, "cache": 0.0, "kinds": []})
        entry[fit.folder] += fit.disk_gb
        entry["kinds"].append(fit.kind)
    try:
        write_json({"key": key, "needs": needs}, path)
    except OSError:  # a full disk: the check that follows says so better than this memo would
        pass
    return needs


def disk_shortfalls(cfg, notebook: str, free_gb=None) -> list[str]:
    """Where notebook `notebook` ("04") would run out of disk: per folder (run folder, cache) what its fits write,
    less what they already wrote there (a rerun resumes), against the folder's free space (`free_gb`: a
    function of a folder, for tests). Each names the folder, the need, the free space and the way out."""
    import shutil

    free_gb = free_gb or (lambda folder: shutil.disk_usage(folder).free / GB)
    run_dir = Path(cfg.output_dir) / cfg.run_name
    needs = notebook_disk_needs(cfg).get(notebook, {"run": 0.0, "cache": 0.0, "kinds": []})
    folders = {"run": (run_dir, "--output-dir"), "cache": (Path(cfg.cache_dir), "--cache-dir")}
    held = {"run": sum(_size_gb(run_dir / "checkpoints" / sub) for sub in _checkpoint_folders(notebook, needs["kinds"])),
            "cache": _size_gb(Path(cfg.cache_dir))}  # the cache is shared by content: counted whole, leniently
    out = []
    for name, (folder, option) in folders.items():
        need = needs[name] - held[name]
        existing = folder
        while not existing.exists():
            existing = existing.parent
        if need > 0 and free_gb(existing) < need:
            out.append(f"{folder}: notebook {notebook} writes about {amount(need)} there and its disk has "
                       f"{amount(free_gb(existing))} free; free space, or move it with {option} (python -m utils.plan "
                       f"shows the whole run's needs)")
    return out
