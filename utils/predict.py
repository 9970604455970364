"""Hashtags for a new place: top-k cat3 with probabilities and the path `#cat1 #cat2 #cat3`.

    python -m utils.predict --image photo.jpg --text "서울 종로구의 한정식 식당 ..."
    python -m utils.predict --csv path/to/test.csv          # a CSV in the real layout (id,img_path,overview)

Loads the multimodal models that `./run_all.sh` trained (the K-fold fusion models of notebook 06,
described by outputs/predictor.json). The predicted path is always a path of the taxonomy.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from . import paths
from .data import load_taxonomy, read_csv_any
from .features import image_tensor
from .images import probe_image
from .io import read_json, write_json
from .metrics import hierarchical_decode
from .text import clean_overview

MODEL_CARD = "predictor.json"


class PredictionError(ValueError):
    """A clear, user-facing reason why a prediction cannot be made."""


def save_predictor(kind: str, cfg: dict, checkpoints: list[Path], output_dir=None) -> Path:
    """Describe the trained models that `predict` should load (written by notebook 06)."""
    card = {"kind": kind, "cfg": cfg, "checkpoints": [str(Path(c).resolve()) for c in checkpoints]}
    return write_json(card, paths.outputs(output_dir) / MODEL_CARD)


class Predictor:
    def __init__(self, output_dir=None, device: str = "cpu"):
        from .models import build_model, frozen_backbone

        card_path = paths.outputs(output_dir) / MODEL_CARD
        card = read_json(card_path)
        if card is None:
            raise PredictionError(f"{card_path}: no trained model found; run ./run_all.sh (notebook 06) first")
        missing = [c for c in card["checkpoints"] if not Path(c).exists()]
        if missing:
            raise PredictionError(f"trained model file(s) missing: {missing}; rerun ./run_all.sh 06")
        self.taxonomy = load_taxonomy()
        self.cfg, self.device = card["cfg"], device
        self.models = []
        try:
            for checkpoint in card["checkpoints"]:
                model = build_model(card["kind"], self.cfg, self.taxonomy.sizes)
                model.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=False)
                self.models.append(model.to(device).eval())
        except KeyError as exc:
            raise PredictionError(f"{card_path} was written by an older version (no setting {exc}); "
                                  f"rerun ./run_all.sh 06") from exc
        self.text, self.image = frozen_backbone("text", self.cfg), frozen_backbone("image", self.cfg)

    def _frozen_states(self, batch: dict) -> dict:
        """The K fold models share their frozen encoders: run those once and hand every model the states."""
        first = self.models[0]
        text, image = getattr(first, "text", None), getattr(first, "image", None)
        if text is not None and not text.trains_top:
            batch["text_final"], batch["text_mask"] = text(batch)
        if image is not None and not image.trains_top:
            batch["image_final"] = image(batch)
        return batch

    def probabilities(self, images, texts, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Probabilities per level, averaged over the fold models; every input is checked before any work."""
        from .progress import bar

        images, texts = list(images), list(texts)
        for path, text in zip(images, texts):
            if not str(text).strip() or not clean_overview(text):
                raise PredictionError(f"empty text for image {path}: a description is needed")
            error = probe_image(path)
            if error:
                raise PredictionError(f"{path}: {error}")
        out = {}
        for start in bar(range(0, len(images), batch_size), "predicting"):
            chunk = slice(start, start + batch_size)
            batch = self.text.tokenize(list(texts[chunk]), self.cfg["max_len"])
            batch["pixels"] = torch.stack([image_tensor(p, self.cfg["image_size"], self.image.mean, self.image.std)
                                           for p in images[chunk]])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                batch = self._frozen_states(batch)
                mean = {}
                for model in self.models:
                    for level, value in model(batch).items():
                        mean[level] = mean.get(level, 0) + value.softmax(-1).cpu().numpy() / len(self.models)
            for level, value in mean.items():
                out.setdefault(level, []).append(value)
        return {level: np.concatenate(parts) for level, parts in out.items()}

    def predict(self, images, texts, top_k: int = 3) -> list[dict]:
        """Per item: the consistent best path as hashtags and the top-k cat3 with their probabilities."""
        probs = self.probabilities(images, texts)
        best = hierarchical_decode(probs, self.taxonomy)["cat3"]
        results = []
        for i, b in enumerate(best):
            cat1, cat2, cat3 = self.taxonomy.path(self.taxonomy.cat3[b])
            order = np.argsort(-probs["cat3"][i])[:top_k]
            results.append({"cat1": cat1, "cat2": cat2, "cat3": cat3,
                            "hashtags": " ".join("#" + name.replace(" ", "") for name in (cat1, cat2, cat3)),
                            "top_k": [(self.taxonomy.cat3[j], float(probs["cat3"][i, j])) for j in order]})
        return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Hashtags (#cat1 #cat2 #cat3) for places from a photo and a text.")
    parser.add_argument("--image", help="a photo of the place")
    parser.add_argument("--text", help="its description (Korean overview)")
    parser.add_argument("--csv", help="many at once: a CSV in the real layout with id,img_path,overview")
    parser.add_argument("--out", help="with --csv: write the predictions here (default: print them)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--output-dir", default=None, help="where ./run_all.sh wrote its outputs (default outputs/)")
    args = parser.parse_args(argv)
    try:
        if args.csv:
            frame = read_csv_any(args.csv)
            base = Path(args.csv).resolve().parent
            images, texts, ids = [str(base / p) for p in frame["img_path"]], frame["overview"].tolist(), frame["id"]
        elif args.image and args.text is not None:
            images, texts, ids = [args.image], [args.text], ["input"]
        else:
            parser.error("give --image and --text, or --csv")
        predictor = Predictor(args.output_dir)
        results = predictor.predict(images, texts, args.top_k)
    except (PredictionError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.csv and args.out:
        import pandas as pd

        from .io import write_csv
        write_csv(pd.DataFrame([{"id": i, "cat3": r["cat3"], "hashtags": r["hashtags"],
                                 "probability": r["top_k"][0][1]} for i, r in zip(ids, results)]), args.out)
        print(f"wrote {len(results)} predictions to {args.out}")
        return 0
    for i, r in zip(ids, results):
        top = ", ".join(f"{name} {p:.2f}" for name, p in r["top_k"])
        print(f"{i}: {r['hashtags']}   (top {args.top_k}: {top})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
