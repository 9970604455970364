"""The model kinds, each registered once: what it reads, how it is built and trained, its family, what Grad-CAM
explains. Everything that lists kinds derives from here: the configuration's valid kinds and scopes, the inputs
of the feature cache, 06's families for `kfold_models=auto`, the trainers, the predictor's encoders, the
notebooks' lists. Adding a kind is one `register(Kind(...))` in this module (tests/test_kinds.py registers a toy
one in its own process): a kind registered elsewhere is unknown to the worker processes a run spawns (K-fold
units, data-parallel fits) and to `python -m utils.predict`.

Builders and trainers are callables or "module:name" strings inside `utils` (resolved when used), so that the
configuration can read this registry without importing torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Kind:
    """One model kind.

    `inputs`: the cached inputs it reads (features.model_inputs: `text_pooled`, `text_bottom`, `text_final`,
    `text_mask`, `image_pooled`, `image_bottom`, `image_final`); () for a model of the raw text. `reads`: the
    modalities its inputs come from. `build(towers, sizes, cfg)`: the network over the encoder towers (None: not
    a neural model; then `trainer` fits it and `predictor(model, texts, taxonomy)` answers). `tunes`: in cached
    mode it trains its encoders' top layers; `whole`: in end_to_end mode it trains whole encoders (others keep
    them frozen). `warm_start(cfg)`: the frozen kind whose trained head its training starts from, if any.
    `family`: 06 picks the best member of each family under `kfold_models=auto`. `gradcam`: 07 explains it.
    `applies(cfg)`: whether the notebooks train it under this configuration (default: always)."""

    name: str
    family: str
    inputs: tuple[str, ...]
    build: Callable | str | None = None
    trainer: Callable | str | None = None
    predictor: Callable | str | None = None
    tunes: bool = False
    whole: bool = False
    warm_start: Callable | None = None
    gradcam: bool = False
    applies: Callable | None = None

    @property
    def reads(self) -> frozenset:
        """{"text"}, {"image"} or both; a model of the raw text reads text."""
        return frozenset(key.split("_")[0] for key in self.inputs) or frozenset({"text"})

    @property
    def neural(self) -> bool:
        return self.build is not None

    def builder(self) -> Callable:
        return _resolve(self.build)

    def fitter(self) -> Callable | None:
        return _resolve(self.trainer)

    def answers(self) -> Callable:
        return _resolve(self.predictor)

    def starts_from(self, cfg) -> str | None:
        return self.warm_start(cfg) if self.warm_start is not None else None


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind (or replace one of the same name: a test's toy kind)."""
    if not kind.name.isidentifier():
        raise ValueError(f"model kind {kind.name!r}: a name is letters, digits and underscores")
    if (kind.build is None) != (kind.trainer is not None) or (kind.build is None) != (kind.predictor is not None):
        raise ValueError(f"model kind {kind.name!r}: give `build` (a neural model) or `trainer` and `predictor`")
    KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    KINDS.pop(name, None)


def get(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}; choose one of {', '.join(KINDS)}")
    return KINDS[name]


def names(family: str | None = None, cfg=None) -> tuple[str, ...]:
    """The registered kinds (of one family; that apply under `cfg`), in registration order: the order in which
    04 and 05 train them (a frozen kind before the fine-tune that starts from it)."""
    return tuple(k.name for k in KINDS.values() if (family is None or k.family == family)
                 and (cfg is None or k.applies is None or k.applies(cfg)))


def families() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for kind in KINDS.values():
        out[kind.family] = out.get(kind.family, ()) + (kind.name,)
    return out


def _resolve(target):
    """A callable given as "module:name" inside utils, imported now; a callable (or None) as it is."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


def _pooled_text_head(cfg) -> str | None:
    """A layer-wise text head has no frozen counterpart: it starts fresh."""
    return "text_frozen" if cfg.text_head == "pooled" else None


# Registration order is training order (a frozen kind before the fine-tune that starts from it) and, within a family,
# 06's preference among members equally good and equally cheap (ensemble.choose_members).
register(Kind("text_tfidf", "text", (), trainer="experiments:fit_tfidf", predictor="baselines:tfidf_probabilities"))
register(Kind("text_frozen", "text", ("text_pooled",), build="models:text_classifier"))
register(Kind("text_finetuned", "text", ("text_bottom", "text_mask"), build="models:tuned_text_classifier",
              tunes=True, whole=True, warm_start=_pooled_text_head))
register(Kind("image_frozen", "image", ("image_pooled",), build="models:image_classifier", gradcam=True))
register(Kind("image_finetuned", "image", ("image_bottom",), build="models:image_classifier", tunes=True,
              whole=True, warm_start=lambda cfg: "image_frozen"))
register(Kind("image_vit", "image", ("image_bottom",), build="models:vit_classifier", gradcam=True,
              applies=lambda cfg: "vit" not in cfg.image_model))  # a hybrid ViT over a CNN's stages, not a ViT's
register(Kind("fusion_transformer", "multimodal", ("text_final", "text_mask", "image_final"),
              build="models:fusion_transformer", whole=True, gradcam=True))
register(Kind("late_fusion", "multimodal", ("text_pooled", "image_pooled"), build="models:late_fusion"))
