"""Models: encoder towers split into a cacheable bottom and a trainable top, heads, and the fusions.

Every model takes a batch dict and returns {"cat1", "cat2", "cat3"} logits. A batch may carry raw
inputs (`input_ids`/`attention_mask`, `pixels`), cached bottom states (`text_bottom`, `image_bottom`)
or cached final states (`text_final`, `image_final`); the towers use the cheapest one present.
"""
from __future__ import annotations

import torch
from torch import nn

from . import kinds
from .backbones import ImageBackbone, TextBackbone, frozen_backbone, load_backbone, mean_pool
from .taxonomy import LEVELS


def _maybe_checkpoint(tower: nn.Module, fn, h):
    """`fn(h)`, through torch's activation checkpointing when the tower asks for it and gradients flow."""
    if tower.checkpointing and tower.training and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(fn, h, use_reentrant=False)
    return fn(h)


def _set_trainable(modules, flag: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad = flag


class TextTower(nn.Module):
    """A transformers encoder whose top `top_layers` layers can be trained on cached lower states."""

    def __init__(self, backbone: TextBackbone, top_layers: int, train_top: bool):
        super().__init__()
        self.encoder = backbone.model
        layers = self.encoder.encoder.layer
        self.split = len(layers) - top_layers
        self.hidden_size = backbone.hidden_size
        self.trains_top = train_top
        _set_trainable([self.encoder], False)
        if train_top:
            _set_trainable(layers[self.split:], True)
            if self.split == 0:
                _set_trainable([self.encoder.embeddings], True)

    @staticmethod
    def _additive(mask: torch.Tensor, dtype) -> torch.Tensor:
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    checkpointing = False  # end_to_end: recompute each layer's activations in backward (less GPU memory)

    def _run(self, h, mask, layers, every: bool = False):
        """The states after `layers`; with `every`, the list of states before the first and after each layer."""
        extended = self._additive(mask, h.dtype)
        states = [h]
        for layer in layers:
            out = _maybe_checkpoint(self, lambda x, layer=layer: layer(x, attention_mask=extended), h)
            h = out[0] if isinstance(out, tuple) else out
            if every:  # else each layer's output is freed as the next runs (inference: 30 MB an item at RoBERTa-large)
                states.append(h)
        return states if every else h

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters bottom to top (embeddings, then each layer), for layer-wise learning-rate decay."""
        return [list(self.encoder.embeddings.parameters())] + [list(l.parameters()) for l in self.encoder.encoder.layer]

    def bottom(self, input_ids, attention_mask):
        h = self.encoder.embeddings(input_ids=input_ids)
        return self._run(h, attention_mask, self.encoder.encoder.layer[: self.split])

    def top(self, states, attention_mask):
        return self._run(states, attention_mask, self.encoder.encoder.layer[self.split:])

    def hidden_states(self, batch, depths) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Token states at `depths`, counted as transformers' `hidden_states` index (-1: the last layer's output,
        -5: the input of the top four layers), and the mask. Every depth must lie within the layers this tower
        runs (its top, or all of them from raw inputs): a cached state below it cannot be trained through."""
        if "text_bottom" in batch:
            start, mask = batch["text_bottom"].float(), batch["text_mask"]
        elif "input_ids" in batch:
            mask = batch["attention_mask"]
            start = self.bottom(batch["input_ids"], mask)
        else:
            raise ValueError("layer-wise heads need the states below the top layers (text_bottom) or raw tokens")
        layers = self.encoder.encoder.layer[self.split:]
        reach = len(layers) + 1  # depth -1: the last layer's output; depth -reach: the input of the first
        bad = [d for d in depths if not -reach <= d <= -1]
        if bad:
            raise ValueError(f"hidden-state depths {bad} are outside the {reach - 1} text layers this model trains "
                             f"(depths -1 to -{reach}): raise text_top_layers or train end to end")
        above = -1 - max(depths)  # layers above the highest depth asked for: not run
        states = self._run(start, mask, layers[:len(layers) - above], every=True)
        return {d: states[d + above] for d in depths}, mask

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (B, L, H) and the mask of real tokens (B, L)."""
        if "text_final" in batch and not self.trains_top:  # a trainable top must run on the states below it
            return batch["text_final"].float(), batch["text_mask"]
        if "text_bottom" in batch:
            return self.top(batch["text_bottom"].float(), batch["text_mask"]), batch["text_mask"]
        mask = batch["attention_mask"]
        return self.top(self.bottom(batch["input_ids"], mask), mask), mask


class ImageTower(nn.Module):
    """A timm CNN or ViT whose top `top_stages` blocks can be trained on cached lower feature maps."""

    def __init__(self, backbone: ImageBackbone, top_stages: int, train_top: bool):
        super().__init__()
        self.model = backbone.model
        self.kind = "cnn" if hasattr(self.model, "conv_stem") else "vit" if hasattr(self.model, "patch_embed") else None
        if self.kind is None:
            raise ValueError(f"{backbone.name}: only timm EfficientNet-style CNNs and ViTs are supported")
        self.split = len(self.model.blocks) - top_stages
        self.num_features = backbone.num_features
        self.trains_top = train_top
        _set_trainable([self.model], False)
        if train_top:
            _set_trainable(self.top_modules(), True)
            if self.split == 0:  # the whole encoder trains (end to end): its stem too
                for p in self.stem_parameters():
                    p.requires_grad = True

    def stem_modules(self) -> list[nn.Module]:
        m = self.model
        return [m.conv_stem, m.bn1] if self.kind == "cnn" else [m.patch_embed, m.norm_pre]

    def stem_parameters(self) -> list[nn.Parameter]:
        """The stem's weights and the model's own (a ViT's class token and position embeddings, which belong to
        no submodule): what trains below the first block."""
        return [p for m in self.stem_modules() for p in m.parameters()] + list(self.model.parameters(recurse=False))

    def train(self, mode: bool = True):
        """BatchNorm keeps its ImageNet statistics: small fine-tuning batches would only add noise to them."""
        super().train(mode)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def top_modules(self) -> list[nn.Module]:
        blocks = list(self.model.blocks[self.split:])
        if self.kind == "cnn":
            return blocks + [self.model.conv_head, self.model.bn2]
        return blocks + [self.model.norm]

    def bottom(self, pixels):
        m = self.model
        if self.kind == "cnn":
            h = m.bn1(m.conv_stem(pixels))
        else:
            h = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(pixels))))
        for block in m.blocks[: self.split]:
            h = block(h)
        return h

    checkpointing = False

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters bottom to top (stem, each stage or block, head), for layer-wise learning-rate decay."""
        head = [self.model.conv_head, self.model.bn2] if self.kind == "cnn" else [self.model.norm]
        groups = [[b] for b in self.model.blocks] + [head]
        return [self.stem_parameters()] + [[p for m in group for p in m.parameters()] for group in groups]

    def top(self, h):
        """Tokens (B, T, C): the CNN's final feature map flattened, or the ViT's token states."""
        for block in self.model.blocks[self.split:]:
            h = _maybe_checkpoint(self, block, h)
        if self.kind == "cnn":
            h = self.model.bn2(self.model.conv_head(h))
            return h.flatten(2).transpose(1, 2)
        return self.model.norm(h)

    def forward(self, batch) -> torch.Tensor:
        if "image_final" in batch and not self.trains_top:
            return batch["image_final"].float()
        if "image_bottom" in batch:
            return self.top(batch["image_bottom"].float())
        return self.top(self.bottom(batch["pixels"]))


class _Trunk(nn.Module):
    """The CNN tower below its top stages, as a module (the patch embedding of a hybrid ViT)."""

    def __init__(self, cnn: ImageTower):
        super().__init__()
        self.cnn = cnn

    def forward(self, pixels):
        return self.cnn.bottom(pixels)


class HybridViTTower(nn.Module):
    """A ViT whose patch embedding is the pretrained CNN below its top stages (a ViT-hybrid, as R50+ViT-B/16 in
    the ViT paper): timm's VisionTransformer with a HybridEmbed. No pretrained ViT weights ship offline, so the
    demo profile trains this one; the CNN trunk stays frozen, and training reads its cached `image_bottom` maps.
    """

    kind = "vit"

    def __init__(self, cnn: ImageTower, input_size: int, width: int = 128, depth: int = 2, heads: int = 4,
                 mlp_ratio: float = 2.0):
        super().__init__()
        if cnn.kind != "cnn":
            raise ValueError("a hybrid ViT is built on a CNN; this image model is already a ViT: use it directly")
        from functools import partial

        from timm.layers import HybridEmbed
        from timm.models.vision_transformer import VisionTransformer

        self.model = VisionTransformer(img_size=input_size, patch_size=1, num_classes=0, embed_dim=width, depth=depth,
                                       num_heads=heads, mlp_ratio=mlp_ratio,
                                       embed_layer=partial(HybridEmbed, backbone=_Trunk(cnn)))
        self.num_features = width
        self.trains_top = True
        _set_trainable([self.model], True)
        _set_trainable([self.model.patch_embed.backbone], False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.model.patch_embed.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, batch) -> torch.Tensor:
        """Token states (B, 1 + h*w, C): from pixels, or from the cached CNN map below the top stages."""
        vit = self.model
        if "image_bottom" in batch:
            x = vit.patch_embed.proj(batch["image_bottom"].float()).flatten(2).transpose(1, 2)
        else:
            x = vit.patch_embed(batch["pixels"])
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        return vit.norm(vit.blocks(x))


class Heads(nn.Module):
    """One linear head per level; an optional MLP trunk before them (the seed's Dense 128 / 32)."""

    def __init__(self, in_dim: int, sizes: dict[str, int], hidden=(), dropout: float = 0.0):
        super().__init__()
        layers, width = [], in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.trunk = nn.Sequential(nn.Dropout(dropout) if not hidden else nn.Identity(), *layers)
        self.heads = nn.ModuleDict({level: nn.Linear(width, sizes[level]) for level in LEVELS})

    def forward(self, x) -> dict[str, torch.Tensor]:
        x = self.trunk(x)
        return {level: head(x) for level, head in self.heads.items()}


class TextClassifier(nn.Module):
    """Mean-pooled token states, normalised (e5 sentence vectors are nearly collinear), then the heads."""

    def __init__(self, tower: TextTower, sizes, dropout: float = 0.1):
        super().__init__()
        self.tower, self.norm = tower, nn.LayerNorm(tower.hidden_size)
        self.heads = Heads(tower.hidden_size, sizes, dropout=dropout)

    def forward(self, batch):
        """Cached inputs of a frozen tower are already pooled (`text_pooled`); others run the tower."""
        if "text_pooled" in batch and not self.tower.trains_top:
            return self.heads(self.norm(batch["text_pooled"].float()))
        return self.heads(self.norm(pool_text(*self.tower(batch))))


class LayerwiseTextClassifier(nn.Module):
    """The 9th place's text heads (YiyuHong/dacon_tour2022, train_and_infer.py): each level reads the first token
    of its own hidden layer (by default cat1 -5, cat2 -3, cat3 -1: coarse levels from lower layers) through a
    small transformer block of its own, then a linear layer. There the blocks ran on the batch's first-token
    vectors as one unbatched sequence (items of a batch attended to each other); here each block runs over its
    layer's tokens of one item, padding masked, so that a prediction does not depend on its batch."""

    def __init__(self, tower: TextTower, sizes, depths: dict[str, int], dropout: float = 0.1):
        super().__init__()
        self.tower, self.depths = tower, dict(depths)
        above = -1 - max(self.depths.values())  # top layers no head reads: they neither run nor train (data-
        if above > 0:                           # parallel training refuses weights that get no gradient)
            _set_trainable(tower.encoder.encoder.layer[-above:], False)
        width = tower.hidden_size
        nhead = next(n for n in (8, 4, 2, 1) if width % n == 0)
        self.blocks = nn.ModuleDict({level: nn.TransformerEncoderLayer(width, nhead, 2 * width, dropout,
                                                                       batch_first=True, norm_first=True)
                                     for level in LEVELS})
        self.heads = Heads(width, sizes, dropout=dropout)

    def forward(self, batch):
        states, mask = self.tower.hidden_states(batch, sorted(set(self.depths.values())))
        out = {}
        for level in LEVELS:
            tokens = self.blocks[level](states[self.depths[level]], src_key_padding_mask=~mask.bool())
            out[level] = self.heads.heads[level](self.heads.trunk(tokens[:, 0]))
        return out


class ImageClassifier(nn.Module):
    """Global average pooling and a small head: Dense 128, Dropout 0.5, Dense 32, Dropout 0.5."""

    def __init__(self, tower: ImageTower, sizes, hidden=(128, 32), dropout: float = 0.5):
        super().__init__()
        self.tower, self.heads = tower, Heads(tower.num_features, sizes, hidden, dropout)

    def forward(self, batch):
        """Cached inputs of a frozen tower are already pooled (`image_pooled`); others run the tower."""
        if "image_pooled" in batch and not self.tower.trains_top:
            return self.heads(batch["image_pooled"].float())
        return self.heads(pool_image(self.tower(batch)))


class LateFusion(nn.Module):
    """Pooled text and pooled image vectors concatenated, then an MLP. A batch's
    `image_present` / `text_present` (B,) zero the vector of a missing photo or text (see `present`)."""

    def __init__(self, text: TextTower, image: ImageTower, sizes, hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.text, self.image = text, image
        self.heads = Heads(text.hidden_size + image.num_features, sizes, (hidden,), dropout)

    def forward(self, batch):
        """Cached inputs are already pooled (`text_pooled`, `image_pooled`: features.model_inputs); raw rows
        run the frozen towers."""
        text = batch["text_pooled"].float() if "text_pooled" in batch else pool_text(*self.text(batch))
        image = batch["image_pooled"].float() if "image_pooled" in batch else pool_image(self.image(batch))
        return self.heads(torch.cat([text * present(batch, "text", text), image * present(batch, "image", image)], -1))


class FusionTransformer(nn.Module):
    """The contest baseline done right: text tokens and image tokens projected to one width,
    concatenated after a learned CLS token, a TransformerEncoder with batch_first=True and a key
    padding mask for text padding (built here, in __init__, so that it trains), three heads on CLS.
    `encoder_dropout` defaults to 0: on CPU, dropout's random masks cost a third of each step.
    `text_pool` > 1 averages that many neighbouring text tokens (padding left out) before fusing: attention
    cost falls with the square of the sequence, which the CPU demo needs (see utils/config.py).
    `modality_dropout`: in training, that share of items sees only its text or only its image (half each),
    the other modality's tokens masked out, so that a weak image tower cannot make the text side lazy and the
    model answers from one modality alone. A batch's `image_present` (B,) masks the image of items without
    one the same way, in training and inference; `text_present` the text of a photo given alone (the predictor).
    """

    def __init__(self, text: TextTower, image: ImageTower, sizes, d_model: int = 128, nhead: int = 4,
                 num_layers: int = 2, dim_feedforward: int = 256, dropout: float = 0.1, encoder_dropout: float = 0.0,
                 text_pool: int = 1, modality_dropout: float = 0.0):
        super().__init__()
        self.text, self.image, self.text_pool = text, image, text_pool
        self.modality_dropout = modality_dropout
        self.text_proj = nn.Sequential(nn.Linear(text.hidden_size, d_model), nn.LayerNorm(d_model))
        self.image_proj = nn.Sequential(nn.Linear(image.num_features, d_model), nn.LayerNorm(d_model))
        self.modality = nn.Parameter(torch.zeros(3, d_model))  # CLS, text, image
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.modality, std=0.02)
        nn.init.normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, encoder_dropout, batch_first=True,
                                           norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.heads = Heads(d_model, sizes, dropout=dropout)

    def _pool(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked mean over groups of `text_pool` tokens; a group is padding only if all its tokens are."""
        k = self.text_pool
        if k == 1:
            return states, mask
        pad = (-states.shape[1]) % k
        if pad:
            states = nn.functional.pad(states, (0, 0, 0, pad))
            mask = nn.functional.pad(mask, (0, pad))
        b, n, h = states.shape
        weights = mask.to(states.dtype).view(b, n // k, k, 1)
        pooled = (states.view(b, n // k, k, h) * weights).sum(2) / weights.sum(2).clamp(min=1)
        return pooled, mask.view(b, n // k, k).amax(2)

    def forward(self, batch):
        states, mask = self._pool(*self.text(batch))
        text = self.text_proj(states) + self.modality[1]
        image = self.image_proj(self.image(batch)) + self.modality[2]
        cls = self.cls.expand(text.shape[0], -1, -1) + self.modality[0]
        tokens = torch.cat([cls, text, image], dim=1)
        text_on, image_on = self._modalities(batch, len(tokens), tokens.device)
        keep = torch.cat([torch.ones_like(mask[:, :1], dtype=torch.bool), mask.bool() & text_on[:, None],
                          image_on[:, None].expand(-1, image.shape[1])], 1)
        return self.heads(self.norm(self._fuse(tokens, ~keep)[:, 0]))

    def _modalities(self, batch, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) booleans: whether each item's text and image take part (see the class docstring)."""
        every = torch.ones(n, dtype=torch.bool, device=device)
        text_on = batch.get("text_present", every).bool().to(device)
        image_on = batch.get("image_present", every).bool().to(device)
        if self.training and self.modality_dropout > 0:
            dropped = torch.rand(n, device=device) < self.modality_dropout
            drop_text = dropped & (torch.rand(n, device=device) < 0.5) & image_on  # never leave an item empty
            text_on = text_on & ~drop_text
            image_on = image_on & ~(dropped & ~drop_text & text_on)
        return text_on, image_on

    def _fuse(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """(B, T, d) tokens, True where padding: attention within each item, never to its padding."""
        return self.fusion(tokens, src_key_padding_mask=padding)


def present(batch: dict, modality: str, like: torch.Tensor) -> torch.Tensor:
    """(B, 1) ones where the item has its `modality` (batch key `<modality>_present`; absent key: all do)."""
    flags = batch.get(f"{modality}_present")
    if flags is None:
        return torch.ones(len(like), 1, dtype=like.dtype, device=like.device)
    return flags.to(like.device, like.dtype)[:, None]


def pool_text(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A text's vector: the masked mean of its final states."""
    return mean_pool(states.float(), mask)


def pool_image(tokens: torch.Tensor) -> torch.Tensor:
    """An image's vector: the mean of its final tokens."""
    return tokens.float().mean(1)


# Pooled cached inputs: the states each is made of, and how (features.model_inputs pools the cache once with
# these; LateFusion pools raw rows' states with the same functions, so both paths compute the same vectors).
POOLED = {"text_pooled": (("text_final", "text_mask"), pool_text), "image_pooled": (("image_final",), pool_image)}


def encoder_layer_lrs(model: nn.Module, encoder_lr: float, decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay: the top layer of each pretrained encoder gets `encoder_lr`, each layer
    below it `decay` times the one above (decay 1: every layer `encoder_lr`). Keyed by parameter id."""
    lrs = {}
    for tower in (m for m in model.modules() if isinstance(m, (TextTower, ImageTower))):
        groups = tower.layer_groups()
        for depth, params in enumerate(reversed(groups)):
            lrs.update({id(p): encoder_lr * decay ** depth for p in params})
    return lrs


def pretrained_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters of pretrained encoders (text and image towers), as opposed to new layers: they get
    the encoder learning rate. A hybrid ViT's transformer is new; only its CNN trunk is pretrained."""
    return {id(p) for m in model.modules() if isinstance(m, (TextTower, ImageTower)) for p in m.parameters()}


def _backbone(modality: str, cfg, trainable: bool):
    """A fresh encoder for a model that trains part of it; otherwise the shared frozen one."""
    return load_backbone(modality, cfg) if trainable else frozen_backbone(modality, cfg)


def build_model(kind: str, cfg, sizes: dict[str, int], seed: int = 0, stage: str | None = None,
                backbone=_backbone) -> nn.Module:
    """A fresh model of `kind` (utils/kinds.py) with the configuration's encoders; seeded, so runs repeat.

    The kind's training mode (`cfg.schedule(kind, stage).training_mode`) decides: `cached`: kinds that tune
    train their top text layers / image stages on cached states below them. `end_to_end`: kinds that train whole
    encoders do so from raw inputs (the token-embedding table only with `train_word_embeddings`); the others read
    raw inputs through the shared frozen encoders. `backbone(modality, cfg, trainable)` makes the encoders
    (utils/plan/: weightless ones of the same shapes)."""
    spec = kinds.get(kind)
    torch.manual_seed(seed)
    whole = spec.whole and cfg.schedule(kind, stage).training_mode == "end_to_end"
    towers = {}
    if "text" in spec.reads:
        tuned = whole or spec.tunes
        encoder = backbone("text", cfg, tuned)
        top = encoder.model.config.num_hidden_layers if whole else cfg.text_top_layers
        towers["text"] = TextTower(encoder, top, train_top=tuned)
        if whole and not cfg.train_word_embeddings:
            towers["text"].encoder.embeddings.word_embeddings.weight.requires_grad = False
    if "image" in spec.reads:
        tuned = whole or spec.tunes
        encoder = backbone("image", cfg, tuned)
        towers["image"] = ImageTower(encoder, len(encoder.model.blocks) if whole else cfg.image_top_stages,
                                     train_top=tuned)
    for tower in towers.values():
        tower.checkpointing = whole and cfg.grad_checkpointing
    torch.manual_seed(seed)
    return spec.builder()(towers, sizes, cfg)


# The networks of the registered kinds (utils/kinds.py): build(towers, sizes, cfg).
def text_classifier(towers, sizes, cfg) -> nn.Module:
    return TextClassifier(towers["text"], sizes)


def tuned_text_classifier(towers, sizes, cfg) -> nn.Module:
    if cfg.text_head == "layerwise":
        return LayerwiseTextClassifier(towers["text"], sizes, cfg.head_depths)
    return TextClassifier(towers["text"], sizes)


def image_classifier(towers, sizes, cfg) -> nn.Module:
    return ImageClassifier(towers["image"], sizes)


def vit_classifier(towers, sizes, cfg) -> nn.Module:
    return ImageClassifier(HybridViTTower(towers["image"], cfg.image_size), sizes)


def late_fusion(towers, sizes, cfg) -> nn.Module:
    return LateFusion(towers["text"], towers["image"], sizes)


def fusion_transformer(towers, sizes, cfg) -> nn.Module:
    return FusionTransformer(towers["text"], towers["image"], sizes, d_model=cfg.fusion_width,
                             num_layers=cfg.fusion_layers, dim_feedforward=cfg.fusion_ff,
                             text_pool=cfg.fusion_text_pool, modality_dropout=cfg.modality_dropout)
