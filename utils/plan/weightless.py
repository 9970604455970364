"""The configuration's models without weights: built by `models.build_model` on the meta device (no memory, no
hub), so that the plan counts the run's own parameters; and what each fit reads (raw rows or cached states).
"""
from __future__ import annotations

from pathlib import Path

from .. import kinds
from .assumed import SIZES
from .platforms import PlanError

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
    from ..backbones import ImageBackbone, TextBackbone

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

    from .. import models

    with torch.device(device):
        return models.build_model(kind, cfg, SIZES, seed, stage, backbone=random_backbone)


def trained_parameters(kind: str, cfg, stage: str | None = None) -> tuple[int, int]:
    """(trained, total) parameters of `kind` as the configuration builds it."""
    model = build(kind, cfg, stage)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))




def reads(kind: str, cfg, stage: str | None = None) -> str:
    """What a fit of `kind` reads: raw rows (`raw`: end to end, through the encoders it trains or, for the frozen
    kinds, runs), cached token states (`tokens`), pooled vectors (`pooled`: models.POOLED, kilobytes a row) or the
    text itself (`text`, TF-IDF)."""
    from ..models import POOLED

    if kind == "text_tfidf":
        return "text"
    if cfg.schedule(kind, stage).training_mode == "end_to_end":
        return "raw"
    return "pooled" if all(key in POOLED for key in kinds.get(kind).inputs) else "tokens"

