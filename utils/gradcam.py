"""Grad-CAM (pytorch-grad-cam) for the image models: CNN, ViT, and the image side of the multimodal model."""
from __future__ import annotations

import json
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn


class PixelsToLogits(nn.Module):
    """Pixels in, cat3 logits out, as Grad-CAM expects. `fixed` holds the other inputs (for the multimodal
    model: one item's text states, `text_inputs`), repeated over the batch, so only the image varies."""

    def __init__(self, model: nn.Module, fixed: dict | None = None):
        super().__init__()
        self.model, self.fixed = model, fixed or {}

    def forward(self, pixels):
        pixels = pixels.requires_grad_(True)  # the one tensor autograd tracks (no weight does: image_path_only)
        batch = {"pixels": pixels}
        for key, value in self.fixed.items():
            batch[key] = value.expand(len(pixels), *value.shape[1:]) if value.shape[0] == 1 else value
        return self.model(batch)["cat3"]


def text_inputs(model: nn.Module, tokens: dict) -> dict:
    """The text side of one multimodal model for Grad-CAM's fixed inputs: the final states of the model's own
    text tower (as trained, in any training mode), computed once here without autograd, so that Grad-CAM runs
    only the image path (`image_path_only`)."""
    with torch.no_grad():
        states, mask = model.text(tokens)
    return {"text_final": states, "text_mask": mask}


@contextmanager
def image_path_only(model: nn.Module):
    """For its duration no parameter requires a gradient, and a text tower trained with the rest reads the final
    states it is given (`text_inputs`) instead of running its layers; both restored afterwards. The maps need
    only the gradient with respect to the pixels: autograd then keeps the image path's activations and no weight
    gradients (a fusion model trained end to end: 649 M parameters, about 21 GiB at batch 16 in fp32 otherwise)."""
    flags = {p: p.requires_grad for p in model.parameters()}
    text = getattr(model, "text", None)
    trains_top = getattr(text, "trains_top", None)
    for p in flags:
        p.requires_grad_(False)
    if text is not None:
        text.trains_top = False
    try:
        yield model
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        if text is not None:
            text.trains_top = trains_top


def image_tower(model: nn.Module):
    for attr in ("tower", "image"):
        tower = getattr(model, attr, None)
        if tower is not None and hasattr(tower, "kind"):
            return tower
    raise ValueError("model has no image tower")


def candidate_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers Grad-CAM may read, by name. A CNN: the outputs of its third- and second-to-last stages (at
    128 px an 8x8 and a 4x4 map) and its final 1x1-conv map. A ViT: the input norm of its last two blocks (the
    usual choice) and its final norm."""
    tower = image_tower(model)
    m = tower.model
    if tower.kind == "cnn":
        return {"stage -2": m.blocks[-2], "stage -3": m.blocks[-3], "final map": m.bn2}
    return {"block -1": m.blocks[-1].norm1, "block -2": m.blocks[-2].norm1, "final norm": m.norm}


METHODS = ("gradcam", "gradcam++", "layercam")
DEFAULTS_FILE = Path(__file__).with_name("gradcam_defaults.json")  # the calibration's winners, as measured


@lru_cache(maxsize=1)
def _measured_defaults() -> dict:
    return json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))


def default_explainer(model_name: str | None, tower_kind: str) -> tuple[str, str]:
    """(layer, method) for a model when there are no object boxes to choose on: the winner of 07's calibration on
    the bundled data for that model (recorded with its measurement in gradcam_defaults.json), else its tower
    kind's. Layer and method always come as the pair that was measured together."""
    measured = _measured_defaults()
    entry = measured["models"].get(model_name) or measured["tower_kinds"][tower_kind]
    return entry["layer"], entry["method"]


def _cam_class(method: str):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM}
    if method not in classes:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(classes)}")
    return classes[method]


def vit_reshape_transform(vit: nn.Module, input_size: int):
    """Token states (B, prefix + h*w, C) to a (B, C, h, w) map. The grid comes from the model's total patch
    reduction and the input size (ViT-L/32 at 384 px: 12 x 12; a hybrid ViT: its CNN stride times its patch),
    and the class/register tokens are dropped."""
    embed = vit.patch_embed
    ratio = embed.feat_ratio(as_scalar=False) if hasattr(embed, "feat_ratio") else embed.patch_size
    grid_h, grid_w = input_size // ratio[0], input_size // ratio[1]
    prefix = getattr(vit, "num_prefix_tokens", 1)

    def reshape(tensor):
        tokens = tensor[:, prefix:, :]
        if tokens.shape[1] != grid_h * grid_w:
            raise ValueError(f"{tokens.shape[1]} patch tokens do not make a {grid_h}x{grid_w} grid")
        return tokens.reshape(tokens.size(0), grid_h, grid_w, tokens.size(2)).permute(0, 3, 1, 2)

    return reshape


def heatmaps(model: nn.Module, pixels: torch.Tensor, fixed: dict | None = None, layer: str | None = None,
             method: str | None = None, input_size: int | None = None, targets=None) -> np.ndarray:
    """CAM maps (B, H, W) in [0, 1] at the input resolution, for the predicted cat3 unless `targets`.
    `layer` names one of `candidate_layers`; either left out comes from the measured default pair for the
    tower's kind (`default_explainer`)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    tower = image_tower(model)
    layers = candidate_layers(model)
    default_layer, default_method = default_explainer(None, tower.kind)
    layer, method = layer or default_layer, method or default_method
    if layer not in layers:
        raise ValueError(f"unknown layer {layer!r} for a {tower.kind}; choose one of {sorted(layers)}")
    reshape = vit_reshape_transform(tower.model, input_size or pixels.shape[-1]) if tower.kind == "vit" else None
    wrapped = PixelsToLogits(model, fixed)
    with image_path_only(model):
        with _cam_class(method)(model=wrapped, target_layers=[layers[layer]], reshape_transform=reshape) as cam:
            return cam(input_tensor=pixels, targets=[ClassifierOutputTarget(int(t)) for t in targets]
                       if targets is not None else None)


def explain(model: nn.Module, pixels: torch.Tensor, fixed: dict | None = None, layer: str | None = None,
            method: str | None = None, batch_size: int = 16, desc: str = "Grad-CAM") -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps and predicted cat3 codes for many images, in chunks, on the model's device (fp32: gradients
    of half-precision activations would quantise the maps); the rows of `fixed` align with `pixels`. In eval mode
    from the first forward: in training mode batch norm would move its running statistics, those of a frozen encoder
    that every model of the process shares."""
    from .progress import bar

    model.eval()
    device = next(model.parameters()).device
    maps, preds = [], []
    with image_path_only(model):
        for start in bar(range(0, len(pixels), batch_size), desc):
            chunk = slice(start, start + batch_size)
            part = {k: v[chunk].to(device) for k, v in fixed.items()} if fixed else None
            with torch.no_grad():
                preds.append(PixelsToLogits(model, part)(pixels[chunk].to(device)).argmax(1).cpu().numpy())
            maps.append(heatmaps(model, pixels[chunk].to(device), part, layer, method))
    return np.concatenate(maps), np.concatenate(preds)


def compare_explainers(model: nn.Module, pixels: torch.Tensor, boxes: np.ndarray | None, sizes,
                       fixed: dict | None = None):
    """Every candidate layer and CAM method, best first by `peak_occlusion_drop`, a rule that needs no boxes;
    with boxes, also the share of heatmap peaks inside the object. Run it on images other than those reported, so
    that the choice is not scored on itself."""
    import pandas as pd

    rows, before = [], None
    for layer in candidate_layers(model):
        for method in METHODS:
            maps, preds = explain(model, pixels, fixed, layer, method, desc=f"{method} on {layer}")
            if before is None:  # the same predictions for every layer and method: their probabilities once
                before = predicted_probability(model, pixels, fixed, preds)
            row = {"layer": layer, "method": method,
                   "drop at peak": peak_occlusion_drop(model, pixels, fixed, maps, preds, before)}
            if boxes is not None:
                row["peak inside object"] = share_inside(peak_points(maps, sizes), boxes)
            rows.append(row)
    return pd.DataFrame(rows).sort_values("drop at peak", ascending=False, kind="stable").reset_index(drop=True)


def predicted_probability(model: nn.Module, pixels: torch.Tensor, fixed: dict | None, preds: np.ndarray,
                          batch_size: int = 16) -> np.ndarray:
    """Each image's probability of the cat3 in `preds`, in chunks on the model's device."""
    device = next(model.parameters()).device
    out = []
    with image_path_only(model), torch.no_grad():
        for start in range(0, len(pixels), batch_size):
            chunk = slice(start, start + batch_size)
            part = {k: v[chunk].to(device) for k, v in fixed.items()} if fixed else None
            target = torch.as_tensor(preds[chunk], device=device)[:, None]
            probs = PixelsToLogits(model, part)(pixels[chunk].to(device)).softmax(1).gather(1, target)
            out.append(probs.squeeze(1).float().cpu().numpy())
    return np.concatenate(out)


def peak_occlusion_drop(model: nn.Module, pixels: torch.Tensor, fixed: dict | None, maps: np.ndarray,
                        preds: np.ndarray, before: np.ndarray | None = None, share: float = 0.25) -> float:
    """Mean fall of the predicted cat3's probability (`before`: on the intact images, computed when not given)
    when a square around the heatmap's peak (sides `share` of the input's) is set to the data's mean (0 after
    normalisation): a heatmap that finds the evidence the model uses costs it most there. Chooses a layer and
    method without object boxes."""
    side = max(1, int(round(share * pixels.shape[-1])))
    occluded = pixels.clone()
    for i, cam in enumerate(maps):
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        y0, x0 = max(0, min(int(y) - side // 2, pixels.shape[-2] - side)), max(0, min(int(x) - side // 2, pixels.shape[-1] - side))
        occluded[i, :, y0:y0 + side, x0:x0 + side] = 0.0
    before = predicted_probability(model, pixels, fixed, preds) if before is None else before
    return float(np.mean(before - predicted_probability(model, occluded, fixed, preds)))


def peak_points(maps: np.ndarray, sizes) -> np.ndarray:
    """Each map's maximum, mapped from the square model input back to the original image's pixels (x, y)."""
    points = []
    for cam, (width, height) in zip(maps, sizes):
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        points.append(((x + 0.5) * width / cam.shape[1], (y + 0.5) * height / cam.shape[0]))
    return np.array(points)


def share_inside(points: np.ndarray, boxes: np.ndarray) -> float:
    """Share of points (x, y) inside their box (x0, y0, x1, y1)."""
    x, y = points[:, 0], points[:, 1]
    return float(np.mean((x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])))


def score_against_boxes(models: dict, points: dict, pixels, fixed: dict, sizes, boxes: np.ndarray,
                        explainers: dict, defaults: dict, seed: int = 0) -> tuple[dict, dict]:
    """Share of each model's heatmap peaks (`peak_points`) inside the object box, beside two references (a random
    point, and the box area share it is expected to score), and each model's share under its recorded defaults
    (explained again where the boxes chose another layer or method)."""
    rng = np.random.default_rng(seed)
    random_points = np.array([(rng.uniform(0, w), rng.uniform(0, h)) for w, h in sizes])
    result = {name: share_inside(p, boxes) for name, p in points.items()}
    result["random point"] = share_inside(random_points, boxes)
    result["random point (expected: box area share)"] = float(
        np.mean([(b[2] - b[0]) * (b[3] - b[1]) / (w * h) for b, (w, h) in zip(boxes, sizes)]))
    with_defaults = {}
    for name, model in models.items():
        if tuple(explainers[name]) == tuple(defaults[name]):
            with_defaults[name] = result[name]
            continue
        cams, _ = explain(model, pixels, fixed.get(name), *defaults[name],
                          desc=f"{name}: the defaults, {' on '.join(defaults[name][::-1])}")
        with_defaults[name] = share_inside(peak_points(cams, sizes), boxes)
    return result, with_defaults
