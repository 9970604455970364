"""The encoder-state cache: chunked, resumable, memory-mapped."""
import numpy as np
import pytest
import torch

from utils.config import build
from utils.data import load_dataset
from utils.features import cached_arrays, feature_data, text_features


def _encoder(calls, fail_at=None):
    """Fake encoder of rows [start, stop): a deterministic (rows, 4, 3) fp16 state and a (rows, 4) mask."""
    def encode(start, stop):
        if fail_at is not None and start == fail_at:
            raise KeyboardInterrupt("interrupted by the user")
        calls.append(start)
        rows = np.arange(start, stop)[:, None, None]
        return {"final": torch.from_numpy((rows * np.ones((1, 4, 3))).astype(np.float16)),
                "mask": torch.from_numpy(np.tile(np.arange(4) < 3, (stop - start, 1)))}
    return encode


def test_an_interrupted_caching_pass_resumes_without_recomputing_finished_chunks(tmp_path):
    folder, calls = tmp_path / "features" / "entry", []
    with pytest.raises(KeyboardInterrupt):
        cached_arrays(folder, 50, _encoder(calls, fail_at=30), {"ids": list(range(50))}, "test", chunk_rows=10)
    assert calls == [0, 10, 20] and not folder.exists()  # nothing half-written looks finished
    resumed_calls = []
    got = cached_arrays(folder, 50, _encoder(resumed_calls), {"ids": list(range(50))}, "test", chunk_rows=10)
    assert resumed_calls == [30, 40]  # only the chunks that were not finished
    want = cached_arrays(tmp_path / "whole", 50, _encoder([]), {"ids": list(range(50))}, "test", chunk_rows=10)
    assert torch.equal(got["final"], want["final"]) and torch.equal(got["mask"], want["mask"])
    assert got["ids"] == list(range(50)) and float(got["final"][37, 0, 0]) == 37.0
    assert not (tmp_path / "features" / "entry.partial").exists()
    again = []
    cached_arrays(folder, 50, _encoder(again), {}, "test", chunk_rows=10)
    assert again == []  # a finished entry is read, not recomputed


def test_cached_states_are_read_memory_mapped_and_match_a_fresh_encoding(tiny_data, tmp_path):
    ds = load_dataset(tiny_data, progress=False, check_images=False)
    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache")})
    states = text_features(ds, cfg)
    files = list((tmp_path / "cache" / "features").glob("text-*/final.npy"))
    assert len(files) == 1
    mapped = np.load(files[0], mmap_mode="r")
    assert states["final"].shape == mapped.shape and np.array_equal(states["final"].numpy(), mapped)
    data = feature_data(ds, cfg, ("text_final", "text_mask"))
    assert len(data) == len(ds.train) + len(ds.test) and data.tensors["text_final"].dtype == torch.float16



def test_a_caching_pass_on_a_gpu_hands_the_shared_encoder_back_to_host_memory(tiny_data, tmp_path, monkeypatch):
    """`cache_tower` moves the shared frozen encoder to the GPU in place; once the pass is over it goes back, so
    that the fine-tunes after it have the card (taken on the CPU: the encoder said to be on a GPU)."""
    from utils import features
    from utils.backbones import loaded_frozen

    ds = load_dataset(tiny_data, progress=False, check_images=False)
    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache")})
    moves = []
    monkeypatch.setattr(features, "_on_gpu", lambda model: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: moves.append("emptied"))
    real_to = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moves.append(a) or real_to(self, *a, **k))
    text_features(ds, cfg)
    assert moves[-2:] == [("cpu",), "emptied"] and loaded_frozen("text", cfg) is not None


def test_states_computed_in_bf16_are_cached_apart_from_fp32_ones(tiny_data, tmp_path):
    """States computed under bf16 autocast (`precision=bf16`) differ from fp32's in the last bits: the cache keys
    them apart and never hands one for the other."""
    ds = load_dataset(tiny_data, progress=False, check_images=False)
    states = {p: text_features(ds, build("tiny", {"cache_dir": str(tmp_path / "cache"), "precision": p}))
              for p in ("fp32", "bf16")}
    folders = sorted(p.name for p in (tmp_path / "cache" / "features").glob("text-*"))
    assert len(folders) == 2 and folders[0] + "-bf16" == folders[1]
    assert not torch.equal(states["fp32"]["final"], states["bf16"]["final"])
    assert torch.allclose(states["fp32"]["final"].float(), states["bf16"]["final"].float(), atol=0.1)

def test_frozen_models_read_pooled_vectors_without_a_token_cache_where_nothing_needs_the_tokens(tiny_data, tmp_path):
    """The full profile trains every token-reading model end to end: its frozen models, late fusion and 02's
    experts read one pooled vector a row (RoBERTa-large's 256 token states would be 25 GB at the real size),
    equal bit for bit to the vectors pooled from the token cache."""
    from utils.config import build
    from utils.data import load_dataset
    from utils.features import feature_data

    ds = load_dataset(tiny_data, progress=False, check_images=False)
    keys = ["text_pooled", "image_pooled"]
    frozen_cached = {f"{k}.training_mode": "cached" for k in ("text_frozen", "image_frozen", "late_fusion")}
    pooled = feature_data(ds, build("tiny", {"training_mode": "end_to_end", **frozen_cached,
                                             "cache_dir": str(tmp_path / "a")}), keys)
    tokens = feature_data(ds, build("tiny", {"cache_dir": str(tmp_path / "b")}), keys)
    entries = sorted(p.name for p in (tmp_path / "a" / "features").iterdir())
    assert len(entries) == 2 and all(e.endswith("-pooled") for e in entries), entries
    assert not any(p.name.endswith("-pooled") for p in (tmp_path / "b" / "features").iterdir())
    for key in keys:
        assert pooled.tensors[key].shape[1] < 2000 and torch.equal(pooled.tensors[key], tokens.tensors[key]), key


def test_the_caching_pass_decodes_photos_in_worker_processes_with_the_same_states(tiny_data, tmp_path):
    """On a GPU the caching pass decodes photos in loader workers; here two workers on the CPU give the states
    of the main process's decoding, places without a photo and 03's augmented copies (PIL images) included."""
    from PIL import Image

    from utils.data import load_dataset
    from utils.features import all_rows, encode_images

    ds = load_dataset(tiny_data, progress=False, check_images=False)
    files = all_rows(ds)["image_file"].tolist()[:12] + [None]
    files[3] = Image.open(files[3]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    one = encode_images(files, build("tiny", {"num_workers": 0}), batch_size=5)
    two = encode_images(files, build("tiny", {"num_workers": 2}), batch_size=5)
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_training_the_cache_and_the_predictor_read_a_place_through_one_path(tiny_data, cache_dir):
    """Training rows (rows.RawRows), the caching pass and the predictor batch places with inputs.Places: the same
    tokens, pixels and presence flags whoever reads a place, and the cache stores what encoder_states gives the
    predictor for it. A place without text or photo is flagged absent, its pixels zeros."""
    from utils.features import cache_tower, encode_images, encode_texts, encoder_states
    from utils.inputs import Places, to_device
    from utils.rows import RawRows

    cfg = build("tiny", {"cache_dir": str(cache_dir)})
    rows = RawRows(load_dataset(tiny_data, check_images=False), cfg)
    idx = [i for i in range(len(rows)) if rows.photos[i] is not None][:4]
    places = Places(cfg, [rows.texts[i] for i in idx] + [""], [rows.photos[i] for i in idx] + [None])
    trained, asked = rows.collate([rows[i] for i in idx]), places.collate([places[i] for i in range(5)])
    for key in ("input_ids", "attention_mask", "pixels", "image_present", "text_present", "pixel_stats"):
        assert torch.equal(trained[key], asked[key][:4] if key != "pixel_stats" else asked[key]), key
    assert asked["text_present"].tolist() == [True] * 4 + [False]
    assert asked["image_present"].tolist() == [True] * 4 + [False] and not asked["pixels"][4].any()

    towers = {m: cache_tower(m, cfg, "cpu") for m in ("text", "image")}
    with torch.inference_mode():
        states = encoder_states(towers, to_device(places.collate([places[i] for i in range(4)]), "cpu"))
    texts, photos = encode_texts(places.texts[:4], cfg, batch_size=4), encode_images(places.photos[:4], cfg, batch_size=4)
    width = states["text_final"].shape[1]
    assert torch.equal(texts["final"][:, :width], states["text_final"])
    assert torch.equal(texts["mask"][:, :width], states["text_mask"]) and not texts["mask"][:, width:].any()
    assert torch.equal(photos["final"], states["image_final"]) and torch.equal(photos["bottom"], states["image_bottom"])
