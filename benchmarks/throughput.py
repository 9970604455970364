"""Print, per model, training throughput (items/s) and inference latency per item, on this machine.

    python benchmarks/throughput.py [--profile demo] [--device auto|cpu|cuda] [--repeats 3] [--set KEY=VALUE]
    python benchmarks/throughput.py --profile full --random-weights     # no hub: encoders from their configurations

Training throughput is measured the way the cached pipeline trains: on cached encoder states (a step of forward,
backward and the optimiser), every kind in `cached` mode (the full profile trains its fine-tunes and fusion end to
end: `benchmarks/gpu_check.sh` times those), and for the encoders themselves the one-off encoding pass that fills
the cache. Inference latency is end to end for one new item: clean and tokenize the text, decode and resize the
image, run both encoders and the model. Precision as a run chooses it (utils.runtime.choose_precision: bf16 on
GPUs with native bf16, fp16 with loss scaling on older ones, fp32 on the CPU). A kind the configuration cannot
build (the hybrid ViT on an image model that is already a ViT, as notebook 04 skips it) is reported, not timed.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from utils import kinds  # noqa: E402
from utils.config import build, parse_settings, resolve  # noqa: E402
from utils.features import model_inputs  # noqa: E402
from utils.inputs import image_tensor  # noqa: E402
from utils.models import POOLED, ImageTower, TextTower, build_model  # noqa: E402
from utils.runtime import autocast, choose_precision, machine_description, pick_device  # noqa: E402

SIZES = {"cat1": 6, "cat2": 18, "cat3": 128}
TEXT = ("서울 종로구에 위치한 한정식 전문 식당이다.<br>된장찌개와 불고기, 비빔밥이 유명하며 "
        "가족 단위 여행객이 즐겨 찾는다. ※ 영업시간 : 10:00~21:00 ") * 3


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of `fn` over `repeats` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def configuration(profile: str, device: str, settings: dict):
    """The profile with every kind on cached states (what this benchmark times), resolved for its cache folder."""
    cached = {"training_mode": "cached", **{f"{kind}.training_mode": "cached" for kind in kinds.names()}}
    cfg = build(profile, {**settings, "device": device, **cached})
    return resolve(replace(cfg, data_size=cfg.data_size or "default")) if not cfg.data_dir else resolve(cfg)


def backbones(cfg, random_weights: bool):
    """The text and image encoders: the configured ones, or with `random_weights` built from their configurations
    (utils.plan.random_backbone: no hub, no tokenizer)."""
    if random_weights:
        from utils.plan import random_backbone

        return random_backbone("text", cfg), random_backbone("image", cfg)
    from utils.backbones import image_backbone, text_backbone

    return text_backbone(cfg.text_model, cfg.cache_dir), image_backbone(cfg.image_model, cfg.image_size,
                                                                        weights=cfg.image_weights)


def tokens(text_bb, texts: list[str], length: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask; random ids of full length where the encoder has no tokenizer (random weights)."""
    if text_bb.tokenizer is None:
        ids = torch.randint(5, text_bb.model.config.vocab_size, (len(texts), length))
        return ids.to(device), torch.ones_like(ids).to(device)
    batch = text_bb.tokenize(texts, length)
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def model_of(kind: str, cfg, random_weights: bool, device: str):
    """The model of `kind`, or the reason it cannot be built with this configuration."""
    try:
        if random_weights:
            from utils.plan import build as build_random

            return build_random(kind, cfg, device="cpu").to(device), None
        return build_model(kind, cfg, SIZES).to(device), None
    except ValueError as exc:  # e.g. a hybrid ViT asked of an image model that is already a ViT
        return None, str(exc).split(":")[0]


def train_rate(model, kind: str, cached: dict, bs: int, device: str, precision: str, repeats: int) -> float:
    """Items/s of one optimiser step on cached states, in the run's precision (fp16 with a GradScaler)."""
    batch = {k: cached[k] for k in kinds.get(kind).inputs}
    batch.update({level: torch.randint(0, n, (bs,), device=device) for level, n in SIZES.items()})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
    model.train()

    def step():
        with autocast(device, precision):
            out = model(batch)
            loss = sum(torch.nn.functional.cross_entropy(out[k].float(), batch[k]) for k in SIZES)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    return bs / timed(step, repeats, device)


def latency_ms(model, kind: str, towers, text_bb, image_bb, cfg, photo: Path, device: str, precision: str,
               repeats: int) -> float:
    """Milliseconds for one new item end to end: tokenize, decode, both encoders, the model."""
    text, image = towers
    model.eval()

    def one_item():
        item = {}
        with torch.inference_mode(), autocast(device, precision):
            if "text" in kinds.get(kind).reads:
                i, m = tokens(text_bb, [TEXT], cfg.max_len, device)
                low = text.bottom(i, m)
                item.update(text_bottom=low, text_final=text.top(low, m), text_mask=m)
            if "image" in kinds.get(kind).reads:
                x = image_tensor(photo, cfg.image_size, image_bb.mean, image_bb.std)[None].to(device)
                low = image.bottom(x)
                item.update(image_bottom=low, image_final=image.top(low))
            item.update(model_inputs(item, POOLED))
            model({k: item[k] for k in kinds.get(kind).inputs})

    return timed(one_item, repeats, device) * 1000


def cached_states(text, image, ids, mask, pixels, device: str, precision: str) -> dict:
    """What the caching pass stores for a batch, and the pooled vectors late fusion and frozen models read."""
    with torch.inference_mode(), autocast(device, precision):
        text_low, image_low = text.bottom(ids, mask), image.bottom(pixels)
        cached = {"text_bottom": text_low, "text_final": text.top(text_low, mask), "text_mask": mask,
                  "image_bottom": image_low, "image_final": image.top(image_low)}
    cached = {k: v.clone() for k, v in cached.items()}
    cached.update(model_inputs(cached, POOLED))
    return cached


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--random-weights", action="store_true", help="encoders built from their configurations")
    parser.add_argument("--kinds", default="", help="comma-separated model kinds (default: all but TF-IDF)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    cfg = configuration(args.profile, device, parse_settings(args.sets))
    precision = choose_precision(device, cfg.precision)
    bs, L, size = args.batch_size, cfg.max_len, cfg.image_size
    torch.manual_seed(0)
    print(f"machine: {machine_description()}; device used: {device}; precision {precision}; torch threads "
          f"{torch.get_num_threads()}")
    print(f"profile {args.profile}: text {cfg.text_model} ({L} tokens), image {cfg.image_model} ({size}px), "
          f"batch {bs}\n")
    text_bb, image_bb = backbones(cfg, args.random_weights)
    text = TextTower(text_bb, cfg.text_top_layers, False).to(device).eval()
    image = ImageTower(image_bb, cfg.image_top_stages, False).to(device).eval()
    ids, mask = tokens(text_bb, [TEXT] * bs, L, device)
    pixels = torch.randn(bs, 3, size, size, device=device)
    cached = cached_states(text, image, ids, mask, pixels, device, precision)
    rows = []
    with torch.inference_mode(), autocast(device, precision):
        rows.append(("text encoder (caching pass)", bs / timed(lambda: text.top(text.bottom(ids, mask), mask),
                                                               args.repeats, device), None))
        cl_pixels = pixels.contiguous(memory_format=torch.channels_last)  # as utils/features.py encodes
        rows.append(("image encoder (caching pass)", bs / timed(lambda: image.top(image.bottom(cl_pixels)),
                                                                args.repeats, device), None))
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((280, 360, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    photo = Path("/tmp/benchmark_photo.jpg")
    photo.write_bytes(buf.getvalue())
    wanted = [k for k in (args.kinds.split(",") if args.kinds else kinds.names()) if kinds.get(k).neural]  # TF-IDF: no encoder
    for kind in wanted:
        model, why = model_of(kind, cfg, args.random_weights, device)
        if model is None:
            rows.append((kind, None, why))
            continue
        rate = train_rate(model, kind, cached, bs, device, precision, args.repeats)
        rows.append((kind, rate, latency_ms(model, kind, (text, image), text_bb, image_bb, cfg, photo, device,
                                            precision, args.repeats)))
    print(f"{'model':<30}{'train items/s':>15}{'inference ms/item':>20}")
    for name, rate, latency in rows:
        if rate is None:
            print(f"{name:<30}  not timed: {latency}")
            continue
        print(f"{name:<30}{rate:>15.1f}{(f'{latency:.1f}' if latency is not None else '-'):>20}")
    print("\ntrain items/s: one optimiser step on cached encoder states (encoders: their one-off caching pass,"
          " inference only); inference: one new item end to end, batch 1.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
