"""Print, per model, training throughput (items/s) and inference latency per item, on this machine.

    python benchmarks/throughput.py [--profile demo] [--device auto|cpu|cuda] [--repeats 3]

Training throughput is measured the way the pipeline trains: on cached encoder states (a step of
forward, backward and AdamW), and for the encoders themselves the one-off encoding pass that fills the
cache. Inference latency is end to end for one new item: clean and tokenize the text, decode and resize
the image, run both encoders and the model. On a GPU the steps run in bf16 autocast.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from utils.backbones import image_backbone, text_backbone  # noqa: E402
from utils.features import image_tensor, model_inputs  # noqa: E402
from utils.models import INPUTS, POOLED, ImageTower, TextTower, build_model  # noqa: E402
from utils.config import build, resolve  # noqa: E402
from utils.runtime import machine_description, pick_device  # noqa: E402

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


def autocast(device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    device = pick_device(args.device)
    cached_mode = {f"{kind}.training_mode": "cached" for kind in ("text_finetuned", "image_finetuned")}
    cfg = resolve(build(args.profile, {"device": device, **cached_mode}))  # every model on cached states, as timed
    bs, L, size = args.batch_size, cfg.max_len, cfg.image_size
    torch.manual_seed(0)
    print(f"machine: {machine_description()}; device used: {device}; torch threads {torch.get_num_threads()}")
    print(f"profile {args.profile}: text {cfg.text_model} ({L} tokens), image {cfg.image_model} ({size}px), "
          f"batch {bs}\n")

    text_bb, image_bb = text_backbone(cfg.text_model, cfg.cache_dir), image_backbone(cfg.image_model, size)
    text = TextTower(text_bb, cfg.text_top_layers, False).to(device).eval()
    image = ImageTower(image_bb, cfg.image_top_stages, False).to(device).eval()
    tokens = text_bb.tokenize([TEXT] * bs, L)
    ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    pixels = torch.randn(bs, 3, size, size, device=device)
    with torch.inference_mode(), autocast(device):
        text_low, image_low = text.bottom(ids, mask), image.bottom(pixels)
        cached = {"text_bottom": text_low, "text_final": text.top(text_low, mask), "text_mask": mask,
                  "image_bottom": image_low, "image_final": image.top(image_low)}
    cached = {k: v.clone() for k, v in cached.items()}
    cached.update(model_inputs(cached, POOLED))  # what late fusion reads, pooled once as the cache path does

    rows = []
    with torch.inference_mode(), autocast(device):
        t = timed(lambda: text.top(text.bottom(ids, mask), mask), args.repeats, device)
        rows.append(("text encoder (caching pass)", bs / t, None))
        caching = ImageTower(image_backbone(cfg.image_model, size), cfg.image_top_stages, False).to(device).eval()
        caching.model.to(memory_format=torch.channels_last)  # as utils/features.py encodes
        cl_pixels = pixels.contiguous(memory_format=torch.channels_last)
        t = timed(lambda: caching.top(caching.bottom(cl_pixels)), args.repeats, device)
        rows.append(("image encoder (caching pass)", bs / t, None))

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((280, 360, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    photo = Path("/tmp/benchmark_photo.jpg")
    photo.write_bytes(buf.getvalue())
    for kind in [k for k in INPUTS if INPUTS[k]]:  # TF-IDF has no encoder step to time
        model = build_model(kind, cfg, SIZES).to(device)
        batch = {k: cached[k] for k in INPUTS[kind]}
        batch["cat1"], batch["cat2"], batch["cat3"] = (torch.randint(0, n, (bs,), device=device) for n in SIZES.values())
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        model.train()

        def step():
            with autocast(device):
                out = model(batch)
                loss = sum(torch.nn.functional.cross_entropy(out[k].float(), batch[k]) for k in SIZES)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        train_rate = bs / timed(step, args.repeats, device)
        model.eval()

        def one_item():
            item = {}
            with torch.inference_mode(), autocast(device):
                if any(k.startswith("text") for k in INPUTS[kind]):
                    tk = text_bb.tokenize([TEXT], L)
                    i, m = tk["input_ids"].to(device), tk["attention_mask"].to(device)
                    low = text.bottom(i, m)
                    item.update(text_bottom=low, text_final=text.top(low, m), text_mask=m)
                if any(k.startswith("image") for k in INPUTS[kind]):
                    x = image_tensor(photo, size, image_bb.mean, image_bb.std)[None].to(device)
                    low = image.bottom(x)
                    item.update(image_bottom=low, image_final=image.top(low))
                item.update(model_inputs(item, POOLED))
                model({k: item[k] for k in INPUTS[kind]})

        rows.append((kind, train_rate, timed(one_item, args.repeats, device) * 1000))

    print(f"{'model':<30}{'train items/s':>15}{'inference ms/item':>20}")
    for name, rate, latency in rows:
        print(f"{name:<30}{rate:>15.1f}{(f'{latency:.1f}' if latency is not None else '-'):>20}")
    print("\ntrain items/s: one optimiser step on cached encoder states (encoders: their one-off caching pass,"
          " inference only); inference: one new item end to end, batch 1.")


if __name__ == "__main__":
    main()
