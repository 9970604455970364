"""What sits on the accelerator: the predictor's members one at a time (in half precision on a GPU), one predictor
for the page, and Grad-CAM with the gradient of the pixels only. Checked on the CPU through the one function every
move to the device goes through (predict._to_device) and through autograd's own records (.grad, hooks)."""
import copy
import itertools
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from utils import gradcam, predict
from utils.backbones import frozen_backbone
from utils.config import build
from utils.data import load_taxonomy
from utils.features import encoder_states
from utils.images import no_photo
from utils.inputs import image_tensor
from utils.runtime import autocast

TAX = load_taxonomy()
SETTINGS = {"fusion_transformer.training_mode": "end_to_end"}  # as in the full profile: each fold its own encoders
FOLDS = {"fusion_transformer": 2, "text_frozen": 2, "image_frozen": 1}  # the frozen kinds share one encoder
WEIGHTS = {"fusion_transformer": 0.5, "text_frozen": 0.3, "image_frozen": 0.2}
TEXTS = ["서울 성수동의 꽃게찜 맛집", "바닷가 캠핑장", "", "박물관 유물 전시실"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from utils.models import build_model
    from utils.training import _trainable_state

    folder = tmp_path_factory.mktemp("run")
    cfg, units = build("tiny", SETTINGS), {}
    for kind, folds in FOLDS.items():
        units[kind] = [folder / f"{kind}-{seed}.pt" for seed in range(1, folds + 1)]
        for seed, path in enumerate(units[kind], 1):
            torch.save(_trainable_state(build_model(kind, cfg, TAX.sizes, seed=seed, stage="kfold")), path)
    predict.save_predictor(cfg, TAX, units, WEIGHTS, folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder, rng = tmp_path_factory.mktemp("photos"), np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(folder / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (50 + 10 * i, 70, 3), dtype=np.uint8)).save(paths[-1])
    return [str(paths[0]), None, str(paths[1]), str(paths[2])]


def tensor_bytes(modules) -> int:
    """Bytes of the distinct tensors (parameters and buffers) of `modules`: a shared encoder counts once."""
    sizes = {}
    for module in modules:
        for t in itertools.chain(module.parameters(), module.buffers()):
            sizes[t.data_ptr()] = t.numel() * t.element_size()
    return sum(sizes.values())


class Ledger:
    """Stands in for predict._to_device: what the predictor put on its device (units, their weights' dtypes, by
    whether a normalisation layer holds them), and the peak bytes of the placed units still referenced when
    another member arrives. Holds only weak references, so it keeps nothing alive."""

    def __init__(self, real):
        self.real, self.placed, self.moves, self.peak, self.dtypes = real, [], 0, 0, set()

    def __call__(self, units, *args, **kwargs):
        placed = self.real(units, *args, **kwargs)
        self.moves += len(units)
        self.placed = [ref for ref in self.placed if ref() is not None] + [weakref.ref(m) for m in placed]
        self.peak = max(self.peak, tensor_bytes(self.alive()))
        self.dtypes |= {(isinstance(layer, predict.NORMS), p.dtype) for m in placed for layer in m.modules()
                        for p in layer.parameters(recurse=False)}
        return placed

    def alive(self):
        return [m for m in (ref() for ref in self.placed) if m is not None]


def ledger(monkeypatch) -> Ledger:
    spy = Ledger(getattr(predict, "_to_device", None))
    monkeypatch.setattr(predict, "_to_device", spy, raising=False)
    return spy


def test_the_predictor_puts_one_member_at_a_time_on_its_device(run_dir, photos, monkeypatch):
    spy = ledger(monkeypatch)
    predictor = predict.Predictor(run_dir)
    assert spy.moves == 0, "nothing goes to the device before there is something to predict"
    members = {kind: units for kind, _, units in predictor.members}
    largest = max(tensor_bytes(units) for units in members.values())
    assert tensor_bytes([u for units in members.values() for u in units]) > 1.5 * largest
    predictor.probabilities(photos, TEXTS, batch_size=2)
    units = sum(len(u) for u in members.values())
    assert spy.moves == units, f"{spy.moves} of the {units} units reached the device through predict._to_device"
    assert 0 < spy.peak <= largest, f"peak {spy.peak} bytes on the device; one member's units are at most {largest}"
    assert not spy.alive(), "a member's units stay on the device after its predictions"


def chunkwise(predictor, images, texts, batch_size):
    """The predictor's answer computed apart from its input path: chunk by chunk, each photo normalised alone and
    each chunk tokenized here, every member's loaded units in turn, blended in the members' order."""
    out, norm = {}, frozen_backbone("image", predictor.cfg)
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        pixels = torch.stack([image_tensor(p, predictor.cfg.image_size, norm.mean, norm.std)
                              for p in images[chunk]])  # one photo at a time, in this process, as before
        batch = {"text_present": torch.tensor([bool(t) for t in texts[chunk]]), "pixels": pixels,
                 "image_present": torch.tensor([not no_photo(p) for p in images[chunk]]),
                 **frozen_backbone("text", predictor.cfg).tokenize(list(texts[chunk]), predictor.cfg.max_len)}
        with autocast(predictor.device, predictor.precision):
            cached = {**batch, **encoder_states(predictor.cache_towers, batch, predictor.cached_inputs)}
        blended = {}
        for kind, weight, units in predictor.members:
            inputs = cached if kind in predictor.cached_kinds else batch
            for level, value in predictor._member_probs(kind, units, inputs, texts[chunk]).items():
                blended[level] = blended.get(level, 0) + weight * value
        for level, value in blended.items():
            out.setdefault(level, []).append(value)
    return {level: np.concatenate(parts) for level, parts in out.items()}


def test_members_taking_turns_on_the_cpu_change_no_bit_of_the_answer(run_dir, photos):
    predictor = predict.Predictor(run_dir)
    assert predictor.dtype == torch.float32  # the CPU keeps the weights the run submitted with
    turns = predictor.probabilities(photos, TEXTS, batch_size=2)
    texts = [t if predict.has_text(t) else "" for t in TEXTS]
    with torch.inference_mode():
        reference = chunkwise(predictor, photos, texts, 2)
    assert set(turns) == set(reference)
    assert all(np.array_equal(turns[level], reference[level]) for level in reference)
    from dataclasses import replace

    predictor.cfg = replace(predictor.cfg, num_workers=2)  # a GPU's loader workers decoding the photos
    workers = predictor.probabilities(photos, TEXTS, batch_size=2)
    assert all(np.array_equal(workers[level], reference[level]) for level in reference)


def test_half_precision_weights_answer_close_to_fp32(run_dir, photos, monkeypatch):
    full = predict.Predictor(run_dir).probabilities(photos, TEXTS, batch_size=2)
    spy = ledger(monkeypatch)
    half = predict.Predictor(run_dir, dtype=torch.bfloat16).probabilities(photos, TEXTS, batch_size=2)
    assert spy.dtypes == {(False, torch.bfloat16), (True, torch.float32)}  # normalisation layers stay fp32
    for level in full:
        assert np.abs(half[level] - full[level]).max() < 5e-3
        assert not np.array_equal(half[level], full[level])  # the half path really ran


def test_weights_are_half_on_a_gpu_by_its_generation_and_fp32_on_the_cpu():
    from utils.runtime import choose_precision

    assert predict.weight_dtype("cuda", choose_precision("cuda", "auto", (7, 5))) == torch.float16  # T4
    assert predict.weight_dtype("cuda", choose_precision("cuda", "auto", (9, 0))) == torch.bfloat16  # H100
    assert predict.weight_dtype("cuda", "fp32") == torch.float32  # an explicit fp32 wins
    assert predict.weight_dtype("cpu", choose_precision("cpu", "auto")) == torch.float32
    assert predict.weight_dtype("cpu", "bf16") == torch.float32  # bf16 autocast on the CPU keeps fp32 weights


def test_the_page_reuses_the_predictor_already_loaded(run_dir, monkeypatch):
    from utils import app

    predictor = predict.Predictor(run_dir, "cpu")
    built, served = [], []
    init = predict.Predictor.__init__
    monkeypatch.setattr(predict.Predictor, "__init__", lambda self, *a, **k: built.append(a) or init(self, *a, **k))
    monkeypatch.setattr(app, "build_app", lambda p: served.append(p) or SimpleNamespace(launch=lambda **_: None))
    monkeypatch.delenv(app.NO_APP_ENV, raising=False)
    app.show(run_dir, "cpu")
    assert not built and served[0] is predictor, "the page built a second predictor of the same run"
    app.show(predictor)
    assert served[1] is predictor


def straightforward_maps(model, pixels, tokens, layer, method):
    """Grad-CAM as the library's README runs it: the whole model under autograd, the text from its tokens."""
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, px):
            return self.model({"pixels": px, **tokens})["cat3"]

    with gradcam._cam_class(method)(model=Wrapped(), target_layers=[gradcam.candidate_layers(model)[layer]]) as cam:
        return cam(input_tensor=pixels, targets=None)


def test_gradcam_computes_only_the_pixels_gradient_and_the_same_maps():
    from utils.models import build_model

    cfg = build("tiny", SETTINGS)
    model = build_model("fusion_transformer", cfg, TAX.sizes, seed=1, stage="kfold").eval()
    assert model.text.trains_top  # the full profile's case: the text tower trained with the rest
    pixels = torch.randn(3, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    tokens = frozen_backbone("text", cfg).tokenize(TEXTS[:2] + TEXTS[3:], cfg.max_len)
    layer, method = gradcam.default_explainer(None, "cnn")
    reference = np.concatenate([straightforward_maps(copy.deepcopy(model), pixels[i:i + 2],
                                                     {k: v[i:i + 2] for k, v in tokens.items()}, layer, method)
                                for i in (0, 2)])
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    under_grad = []
    for block in model.text.encoder.encoder.layer:
        block.register_forward_hook(lambda *_: under_grad.append(torch.is_grad_enabled()))
    fixed = gradcam.text_inputs(model, tokens)
    text_runs = len(under_grad)
    maps, _ = gradcam.explain(model, pixels, fixed, layer, method, batch_size=2)
    gradcam.heatmaps(model, pixels[:1], {k: v[:1] for k, v in fixed.items()}, layer, method)
    assert not any(under_grad), "the text tower ran under autograd during Grad-CAM"
    assert len(under_grad) == text_runs, "the text tower ran again during Grad-CAM: its states were given"
    assert [name for name, p in model.named_parameters() if p.grad is not None] == []
    assert {name: p.requires_grad for name, p in model.named_parameters()} == trainable
    assert np.allclose(maps, reference, atol=1e-5)


def test_the_predictor_reads_places_in_loader_workers_as_in_its_own_process(run_dir, photos):
    """On a GPU the predictor decodes photos in forked loader workers: two workers on the CPU give the answer of
    decoding them in its own process, bit for bit."""
    from dataclasses import replace

    predictor = predict.Predictor(run_dir)
    alone = predictor.probabilities(photos, TEXTS, batch_size=2)
    predictor.cfg = replace(predictor.cfg, num_workers=2)
    forked = predictor.probabilities(photos, TEXTS, batch_size=2)
    assert set(alone) == set(forked) and all(np.array_equal(alone[k], forked[k]) for k in alone)


def test_bf16_encoders_answer_within_bf16_rounding_of_the_run_and_say_where_they_are_slower(run_dir, photos, monkeypatch):
    """`--bf16-encoders`: the cached-mode members read states the encoders computed under bf16 autocast, close to
    the run's fp32 ones but not the same; on a CPU without native bf16 the predictor says it will be slower."""
    from utils import runtime

    run = predict.Predictor(run_dir).probabilities(photos, TEXTS, batch_size=2)
    monkeypatch.setattr(predict, "cpu_computes_bf16", lambda: True)
    fast = predict.Predictor(run_dir, bf16_encoders=True)
    assert (fast.precision, fast.encoder_precision, fast.dtype) == ("fp32", "bf16", torch.float32)
    got = fast.probabilities(photos, TEXTS, batch_size=2)
    for level in run:
        assert np.abs(got[level] - run[level]).max() < 2e-2
        assert not np.array_equal(got[level], run[level])  # the bf16 path really ran
    monkeypatch.setattr(predict, "cpu_computes_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        predict.Predictor(run_dir, bf16_encoders=True)
    assert runtime.choose_precision("cpu", "auto") == "fp32"  # a run itself stays in fp32 on the CPU
    assert "T4" in predict.emulated_bf16("cuda", capability=(7, 5)) and not predict.emulated_bf16("cuda", capability=(9, 0))


def kept_on_the_host(run_dir, photos, monkeypatch):
    """A predictor of `run_dir` and what its `_inputs` kept of each chunk, having predicted TEXTS and `photos`."""
    predictor = predict.Predictor(run_dir)
    kept, real = [], predictor._inputs
    monkeypatch.setattr(predictor, "_inputs", lambda batch: kept.append(real(batch)) or kept[-1])
    predictor.probabilities(photos, TEXTS, batch_size=2)
    return predictor, kept


def test_a_block_waits_on_the_host_with_its_photos_as_read(run_dir, photos, monkeypatch):
    """While each member takes its turn on the device, a block's chunks wait on the host: the photos as decoded,
    uint8 (a quarter of float32's bytes: a GPU's block of 2,048 rows in the memory 512 took), normalised by each
    member that reads them; the cached members read the encoders' states and get no photos."""
    predictor, kept = kept_on_the_host(run_dir, photos, monkeypatch)
    assert len(kept) == 2 and predictor.cached_kinds and "fusion_transformer" not in predictor.cached_kinds
    for batch, cached in kept:
        assert batch["pixels"].dtype == torch.uint8 and "pixel_stats" in batch
        assert "pixels" not in cached and {"text_final", "image_final"} & set(cached)


def test_the_plan_counts_what_a_block_holds_on_the_host(run_dir, photos, monkeypatch):
    """utils/plan's host memory for the predictor counts a block's inputs as `_inputs` keeps them: at least what
    they take, and not twice that."""
    from dataclasses import replace

    from utils.plan import costs, detect_platform

    predictor, kept = kept_on_the_host(run_dir, photos, monkeypatch)
    held = {id(t): t for batch, cached in kept for t in [*batch.values(), *cached.values()]}
    per_row = sum(t.numel() * t.element_size() for t in held.values()) / len(TEXTS)
    cfg = replace(predictor.cfg, kfold_models=",".join(kind for kind, _, _ in predictor.members))
    planned = costs._block_host_bytes(cfg, detect_platform()) / predict.BLOCK_ROWS["cpu"]
    assert per_row <= planned < 2 * per_row, (per_row, planned)
