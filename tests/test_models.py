"""The multimodal fusion model, checked against the three faults of its public copies.

Each check is also run on a deliberately broken variant, to show that the check can fail."""
import copy

import pytest
import torch
from torch import nn

from utils.models import FusionTransformer, ImageTower, LateFusion, TextTower, build_model
from utils.backbones import image_backbone, text_backbone
from utils.config import build

SIZES = {"cat1": 6, "cat2": 18, "cat3": 128}


def towers():
    return (TextTower(text_backbone("tiny-text"), 1, False),
            ImageTower(image_backbone("tiny-image"), 1, False))


class BatchFirstFalse(FusionTransformer):
    """Fault 1: batch_first left False, so (B, T, d) is read as (T, B, d): attention across the batch."""
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        layer = nn.TransformerEncoderLayer(self.cls.shape[-1], 4, 64, 0.0)
        self.fusion = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def _fuse(self, tokens, padding):
        return self.fusion(tokens)


class NoPaddingMask(FusionTransformer):
    """Fault 2: no key padding mask, so padding tokens are attended to."""
    def _fuse(self, tokens, padding):
        return self.fusion(tokens)


class EncoderInForward(FusionTransformer):
    """Fault 3: the encoder built inside forward: fresh random weights every call, never trained."""
    def _fuse(self, tokens, padding):
        layer = nn.TransformerEncoderLayer(tokens.shape[-1], 4, 64, 0.0, batch_first=True)
        return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)(tokens, src_key_padding_mask=padding)


def make(cls, text_pool=1):
    torch.manual_seed(0)
    model = cls(*towers(), SIZES, d_model=32, nhead=4, num_layers=2, dim_feedforward=64, dropout=0.0,
                text_pool=text_pool)
    return model.eval()


def batch(n=3, length=10, image_tokens=4, seed=0, real=6):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, real:] = 0  # item 0 has length - real padding positions
    return {"text_final": torch.randn(n, length, 32, generator=g), "text_mask": mask,
            "image_final": torch.randn(n, image_tokens, 1280, generator=g)}


def items_are_independent(model) -> bool:
    """Item 0's output ignores its companions in the batch, yet depends on its own text and image."""
    b1, b2 = batch(seed=0), batch(seed=1)
    for key in b2:
        b2[key][0] = b1[key][0]  # same item 0, different companions
    own = copy.deepcopy(b1)
    own["text_final"][0, :6] += 1.0
    own["image_final"][0] += 1.0
    with torch.no_grad():
        ref = model(b1)["cat3"][0]
        return (torch.allclose(ref, model(b2)["cat3"][0], atol=1e-5)
                and not torch.allclose(ref, model(own)["cat3"][0], atol=1e-3))


def padding_is_ignored(model, real=6) -> bool:
    b = batch(real=real)
    changed = copy.deepcopy(b)
    changed["text_final"][0, real:] = 100.0  # garbage under the padding
    longer = {"text_final": torch.cat([b["text_final"], torch.randn(3, 5, 32)], 1),
              "text_mask": torch.cat([b["text_mask"], torch.zeros(3, 5, dtype=torch.long)], 1),
              "image_final": b["image_final"]}
    with torch.no_grad():
        ref = model(b)["cat3"]
        return (torch.allclose(ref, model(changed)["cat3"], atol=1e-5)
                and torch.allclose(ref, model(longer)["cat3"], atol=1e-5))


def fusion_encoder_trains(model) -> bool:
    with torch.no_grad():
        same = torch.allclose(model(batch())["cat3"], model(batch())["cat3"])
    owned = {id(p) for p in model.parameters()}
    registered = len(list(model.fusion.parameters())) > 0 and all(id(p) in owned for p in model.fusion.parameters())
    before = [p.detach().clone() for p in model.fusion.parameters()]
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(batch())["cat3"].logsumexp(-1).mean()
    loss.backward()
    opt.step()
    model.eval()
    moved = any(not torch.equal(a, b) for a, b in zip(before, model.fusion.parameters()))
    with torch.no_grad():
        out = model(batch())["cat3"]
        again = model(batch())["cat3"]
    return same and registered and moved and torch.allclose(out, again)


def test_fusion_attends_within_each_item_only():
    assert items_are_independent(make(FusionTransformer))
    assert not items_are_independent(make(BatchFirstFalse))


def test_fusion_ignores_text_padding():
    assert padding_is_ignored(make(FusionTransformer))
    assert not padding_is_ignored(make(NoPaddingMask))


@pytest.mark.parametrize("real", [6, 5])  # 5: one pooled pair holds a real token and a padding one
def test_pooled_text_tokens_still_ignore_padding_and_stay_per_item(real):
    model = make(FusionTransformer, text_pool=2)
    assert padding_is_ignored(model, real) and items_are_independent(model)
    assert not padding_is_ignored(make(NoPaddingMask, text_pool=2), real)
    states, mask = model._pool(torch.arange(6.0).view(1, 3, 2).repeat(1, 2, 1)[:, :5], torch.tensor([[1, 1, 1, 0, 0]]))
    assert mask.tolist() == [[1, 1, 0]] and states[0, 1].tolist() == [4.0, 5.0]  # the pair (real, pad) keeps the real


def test_fusion_encoder_is_built_once_and_trains():
    assert fusion_encoder_trains(make(FusionTransformer))
    assert not fusion_encoder_trains(make(EncoderInForward))


def test_fusion_encoder_is_batch_first_two_layers():
    model = make(FusionTransformer)
    assert model.fusion.layers[0].self_attn.batch_first and len(model.fusion.layers) == 2


CACHED = {"text_finetuned.training_mode": "cached", "image_finetuned.training_mode": "cached"}  # tiny's fine-tunes: e2e


def test_every_kind_returns_three_heads_and_late_fusion_is_per_item():
    cfg = build("tiny", CACHED)
    b = {"text_final": torch.randn(2, 8, 32), "text_bottom": torch.randn(2, 8, 32),
         "text_mask": torch.ones(2, 8, dtype=torch.long)}
    tower = ImageTower(image_backbone("tiny-image"), 1, False)
    b["image_bottom"] = tower.bottom(torch.randn(2, 3, 64, 64)).detach()
    b["image_final"] = tower.top(b["image_bottom"]).detach()
    for kind in ("text_frozen", "text_finetuned", "image_frozen", "image_finetuned", "image_vit", "late_fusion",
                 "fusion_transformer"):
        out = build_model(kind, cfg, SIZES).eval()(b)
        assert {k: v.shape for k, v in out.items()} == {"cat1": (2, 6), "cat2": (2, 18), "cat3": (2, 128)}
    assert isinstance(build_model("late_fusion", cfg, SIZES), LateFusion)


def test_finetuned_kinds_train_only_the_top_in_cached_mode():
    cfg = build("tiny", CACHED)
    model = build_model("text_finetuned", cfg, SIZES)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    layers = model.tower.encoder.encoder.layer
    assert all(p.requires_grad for p in layers[-1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert "heads.trunk" in trainable or "heads.heads" in trainable
    frozen = build_model("image_frozen", cfg, SIZES)
    assert not any(p.requires_grad for p in frozen.tower.parameters())


@pytest.mark.parametrize("name", ["test_vit", "tiny-image"])
def test_a_whole_image_encoder_trains_every_weight_and_decays_them_by_layer(name):
    """End to end (no cached blocks), every weight of the encoder trains, a ViT's class token and position
    embeddings too (they belong to no submodule), and each lies in one layer group, the lowest for those."""
    import timm

    from utils.backbones import ImageBackbone
    from utils.models import encoder_layer_lrs

    if name == "test_vit":  # timm's 0.3 M-weight ViT, random (no hub here)
        backbone = ImageBackbone(name, timm.create_model(name, num_classes=0), (0.5,) * 3, (0.5,) * 3, 160)
    else:
        backbone = image_backbone(name)
    tower = ImageTower(backbone, len(backbone.model.blocks), True)
    assert all(p.requires_grad for p in tower.parameters())
    grouped = [id(p) for group in tower.layer_groups() for p in group]
    assert sorted(grouped) == sorted(id(p) for p in tower.parameters())
    lrs = encoder_layer_lrs(nn.ModuleList([tower]), 1.0, 0.5)
    assert all(lrs[id(p)] == min(lrs.values()) for p in tower.model.parameters(recurse=False))


@pytest.mark.parametrize("kind", ["image_frozen"])
def test_towers_split_reproduces_the_whole_encoder(kind):
    text = TextTower(text_backbone("tiny-text"), 1, False).eval()
    ids = torch.randint(4, 200, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        whole = text.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        split = text.top(text.bottom(ids, mask), mask)
    assert torch.allclose((whole * mask[..., None]), (split * mask[..., None]), atol=1e-5)
    image = ImageTower(image_backbone("tiny-image"), 1, False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = image.model.forward_features(x).flatten(2).transpose(1, 2)
        assert torch.allclose(ref, image.top(image.bottom(x)), atol=1e-5)


def test_finetuned_towers_run_their_top_even_when_final_states_are_present():
    """A fine-tuned model must read the states below its trainable top, never the cached final ones."""
    cfg = build("tiny", CACHED)
    text = build_model("text_finetuned", cfg, SIZES).eval()
    b = {"text_final": torch.randn(2, 8, 32), "text_bottom": torch.randn(2, 8, 32),
         "text_mask": torch.ones(2, 8, dtype=torch.long)}
    with torch.no_grad():
        ref = text(b)["cat3"]
        moved = text({**b, "text_bottom": b["text_bottom"] + 1})["cat3"]
        same = text({**b, "text_final": b["text_final"] + 1})["cat3"]
    assert not torch.allclose(ref, moved) and torch.allclose(ref, same)
    image = build_model("image_finetuned", cfg, SIZES).eval()
    tower = ImageTower(image_backbone("tiny-image"), 1, False)
    low = tower.bottom(torch.randn(2, 3, 64, 64)).detach()
    b = {"image_bottom": low, "image_final": tower.top(low).detach()}
    with torch.no_grad():
        assert torch.allclose(image(b)["cat3"], image({**b, "image_final": b["image_final"] + 1})["cat3"])


def test_hybrid_vit_reads_cached_maps_as_it_reads_pixels_and_trains_only_the_vit():
    """The cached path (CNN map below the top stage) must equal the pixel path, or 07 explains another model."""
    from utils import gradcam

    cfg = build("tiny")
    model = build_model("image_vit", cfg, SIZES).eval()
    vit = model.tower.model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cached = model({"image_bottom": vit.patch_embed.backbone(x)})["cat3"]
        assert torch.allclose(model({"pixels": x})["cat3"], cached, atol=1e-5)
        tokens = vit.forward_features(x)
    assert gradcam.vit_reshape_transform(vit, 64)(tokens).shape[2:] == (2, 2)  # stride 32 at 64 px
    assert not any(p.requires_grad for p in vit.patch_embed.backbone.parameters())
    assert all(p.requires_grad for p in vit.blocks.parameters()) and vit.patch_embed.proj.weight.requires_grad
    model.train()
    assert not any(m.training for m in vit.patch_embed.backbone.modules() if isinstance(m, nn.BatchNorm2d))


def test_frozen_models_share_one_encoder_and_finetuned_ones_get_their_own():
    cfg = build("tiny")
    a, b = build_model("fusion_transformer", cfg, SIZES), build_model("image_frozen", cfg, SIZES, seed=3)
    tuned = build_model("image_finetuned", cfg, SIZES)
    assert a.image.model is b.tower.model and tuned.tower.model is not a.image.model
    before = [p.detach().clone() for p in a.image.model.parameters()]
    opt = torch.optim.SGD([p for p in tuned.parameters() if p.requires_grad], lr=1.0)
    tuned.train()
    tuned({"pixels": torch.randn(2, 3, 64, 64)})["cat3"].sum().backward()
    opt.step()
    assert all(torch.equal(x, y) for x, y in zip(before, a.image.model.parameters()))  # training one left the shared one
    assert not any(p.requires_grad for p in a.image.model.parameters())


def _answers_from(model, seed=0):
    """Per item, which modalities its training-mode output depends on (same random draws each call)."""
    b = batch(n=16)
    b["text_mask"][:] = 1
    other_text, other_image = copy.deepcopy(b), copy.deepcopy(b)
    other_text["text_final"] += 1.0
    other_image["image_final"] += 1.0
    outs = []
    for x in (b, other_text, other_image):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(model(x)["cat3"])
    text = ~torch.isclose(outs[0], outs[1], atol=1e-5).all(1)
    image = ~torch.isclose(outs[0], outs[2], atol=1e-5).all(1)
    return text, image


def test_modality_dropout_shows_each_training_item_one_modality_and_never_none():
    model = make(FusionTransformer)
    model.modality_dropout = 1.0
    model.train()
    text, image = _answers_from(model)
    assert (text ^ image).all() and text.any() and image.any()  # each item exactly one; both kinds occur
    model.eval()
    text, image = _answers_from(model)
    assert text.all() and image.all()  # inference sees both
    model.modality_dropout = 0.0
    model.train()
    text, image = _answers_from(model)
    assert text.all() and image.all()


def test_an_absent_image_is_masked_out():
    model = make(FusionTransformer)
    b = batch()
    b["image_present"] = torch.tensor([0, 1, 1])
    changed = copy.deepcopy(b)
    changed["image_final"] += 5.0
    with torch.no_grad():
        ref, out = model(b)["cat3"], model(changed)["cat3"]
    assert torch.allclose(ref[0], out[0], atol=1e-5) and not torch.allclose(ref[1:], out[1:], atol=1e-3)


@pytest.mark.parametrize("cls", [FusionTransformer, LateFusion])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_a_missing_photo_or_text_is_masked_out(cls, modality):
    """A place without a photo (empty img_path), or a photo given alone to the predictor: whatever stands in for
    the missing input cannot change the answer for that item, and does for the others."""
    model = make(FusionTransformer) if cls is FusionTransformer else _late_fusion()
    b = batch()
    b[f"{modality}_present"] = torch.tensor([0, 1, 1])
    changed = copy.deepcopy(b)
    changed[f"{modality}_final"] += 5.0
    with torch.no_grad():
        ref, out = model(b)["cat3"], model(changed)["cat3"]
    assert torch.allclose(ref[0], out[0], atol=1e-5) and not torch.allclose(ref[1:], out[1:], atol=1e-3)
    del b[f"{modality}_present"], changed[f"{modality}_present"]  # the check can fail: without the flags it does
    with torch.no_grad():
        assert not torch.allclose(model(b)["cat3"][0], model(changed)["cat3"][0], atol=1e-3)


def _late_fusion():
    torch.manual_seed(0)
    return LateFusion(*towers(), SIZES, hidden=32, dropout=0.0).eval()
