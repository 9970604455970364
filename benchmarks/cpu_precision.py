"""What bf16 autocast would buy on this CPU, per kind of work: why a run stays in fp32 on the CPU and the
predictor offers `--bf16-encoders`.

    python benchmarks/cpu_precision.py [--profile demo] [--repeats 5]

Times, in fp32 and under bf16 autocast, the frozen encoders' caching pass (the work the predictor repeats for every
new place) and one optimiser step of the models that train on cached states, with the demo's shapes. Prints them and
writes benchmarks/results/cpu-precision.csv. Where the CPU emulates bf16 (no AVX512-BF16 or AMX), bf16 runs slower
than fp32 everywhere.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from throughput import TEXT, backbones, cached_states, configuration, model_of, timed, tokens, train_rate  # noqa: E402
from utils.config import parse_settings  # noqa: E402
from utils.io import write_csv  # noqa: E402
from utils.models import ImageTower, TextTower  # noqa: E402
from utils.runtime import autocast, cpu_computes_bf16  # noqa: E402

CACHED_KINDS = ("fusion_transformer", "late_fusion", "image_frozen")


def rates(cfg, text, image, text_bb, precision: str, repeats: int) -> dict[str, float]:
    """Rows/s of each encoder's caching pass (its own batch size, as utils/features.py encodes) and items/s of a
    training step of each cached-mode kind (batch_size rows), in `precision`."""
    ids, mask = tokens(text_bb, [TEXT] * 16, cfg.max_len, "cpu")
    pixels = torch.randn(64, 3, cfg.image_size, cfg.image_size).contiguous(memory_format=torch.channels_last)
    out = {}
    with torch.inference_mode(), autocast("cpu", precision):
        out["text encoder"] = 16 / timed(lambda: text.top(text.bottom(ids, mask), mask), repeats, "cpu")
        out["image encoder"] = 64 / timed(lambda: image.top(image.bottom(pixels)), repeats, "cpu")
    bs = cfg.batch_size
    ids, mask = tokens(text_bb, [TEXT] * bs, cfg.max_len, "cpu")
    cached = cached_states(text, image, ids, mask, torch.randn(bs, 3, cfg.image_size, cfg.image_size), "cpu", "fp32")
    for kind in CACHED_KINDS:
        torch.manual_seed(0)
        model, _ = model_of(kind, cfg, False, "cpu")
        out[f"{kind} (cached) training"] = train_rate(model, kind, cached, bs, "cpu", precision, repeats)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-precision.csv"))
    args = parser.parse_args(argv)
    cfg = configuration(args.profile, "cpu", parse_settings(args.sets))
    text_bb, image_bb = backbones(cfg, False)
    text = TextTower(text_bb, cfg.text_top_layers, False).eval()
    image = ImageTower(image_bb, cfg.image_top_stages, False).eval()
    image.model.to(memory_format=torch.channels_last)
    native = cpu_computes_bf16()
    measured = {p: rates(cfg, text, image, text_bb, p, args.repeats) for p in ("fp32", "bf16")}
    machine = f"{platform.machine()} {torch.get_num_threads()} threads"
    rows = []
    for work in measured["fp32"]:
        rows.append({"machine": machine, "cpu_bf16_native": native, "work": work,
                     "fp32_per_s": round(measured["fp32"][work], 1), "bf16_per_s": round(measured["bf16"][work], 1),
                     "bf16_speedup": round(measured["bf16"][work] / measured["fp32"][work], 2),
                     "torch": torch.__version__})
    print(f"{machine}, bf16 native: {native}, profile {args.profile}")
    print(f"{'work':<36}{'fp32 /s':>10}{'bf16 /s':>10}{'bf16 x':>8}")
    for r in rows:
        print(f"{r['work']:<36}{r['fp32_per_s']:>10}{r['bf16_per_s']:>10}{r['bf16_speedup']:>8}")
    write_csv(pd.DataFrame(rows), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
