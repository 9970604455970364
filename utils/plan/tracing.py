"""What a model needs per item, traced on the CPU's dispatch with fake tensors (shapes only, no memory): the bytes
autograd saves for backward (half-precision autocast, fp32, with gradient checkpointing), the peak working set of
a forward pass in inference, and the FLOPs of a training item.

Why fake tensors: the full profile's encoders would need gigabytes and minutes per item on a CPU; traced, the
figures are bit for bit what the CPU measurement of benchmarks/gpu_estimate.py gave (RoBERTa-large at 256 tokens
770 MiB fp32 / 590 MiB half per item, ViT-L/32 at 384 px 131 MiB and 0.265 TFLOP), in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .. import kinds
from .assumed import SIZES
from .weightless import build, reads

HALF = {"bf16", "fp16"}


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


def per_item(high: float, low: float, n_high: int, n_low: int) -> float:
    """What one item adds, from totals at two batch sizes (constant terms cancel): the plan's traced figures and
    gpu_check's measured peaks alike."""
    return (high - low) / (n_high - n_low)


def raw_batch(cfg, n: int, modalities, device=None) -> dict:
    """`n` random raw rows of `modalities` (text, image): full-length token ids, pixels at the configured size,
    labels of every level; the traced batches and gpu_check's measured ones alike."""
    import torch

    out = {}
    if "text" in modalities:
        out["input_ids"] = torch.randint(5, 200, (n, cfg.max_len), device=device)
        out["attention_mask"] = torch.ones(n, cfg.max_len, dtype=torch.long, device=device)
    if "image" in modalities:
        out["pixels"] = torch.randn(n, 3, cfg.image_size, cfg.image_size, device=device)
    out.update({level: torch.randint(0, size, (n,), device=device) for level, size in SIZES.items()})
    return out


def _fake(model):
    """`model` with fake CPU tensors for weights (shapes only) and the mode they live in."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model.to_empty(device="cpu")
    return mode


def _batch(kind: str, cfg, stage, model, n: int) -> dict:
    """A training batch of `n` items as `kind` reads it (raw rows or cached states), full-length texts."""
    if reads(kind, cfg, stage) == "raw":
        return raw_batch(cfg, n, kinds.get(kind).reads)
    raw = raw_batch(cfg, n, ("text", "image"))
    return {**_cached_inputs(kind, model, raw), **{level: raw[level] for level in SIZES}}


def _cached_inputs(kind: str, model, raw: dict) -> dict:
    """Cached states of `raw` as the cache stores them (fp16), computed by the model's own towers."""
    import torch

    from ..models import ImageTower, TextTower, pool_image, pool_text

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
    from ..models import TextTower

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
        infer = per_item(_inference_peak(model, batch[4], "bf16"), _inference_peak(model, batch[2], "bf16"), 4, 2)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    act_half = per_item(half2, half1, 2, 1)
    return Figures(trained, total, act_half, float(act_fp32), float(ckpt) if layers else act_half, float(infer), flops)

