"""A page to try a run's predictor: a photo and a description in; the hashtags, the top-5 cat3 and where the image
model looks (Grad-CAM) out.

    python -m utils.app --run outputs/demo-generated-seed0    # default: the most recent run; --share for a link

In a notebook, `show(run_dir)` opens the same page inline (Jupyter, Colab). It is the predictor of `utils.predict`
(the submission's ensemble), so the page, the CLI and the CSV mode give the same answer for the same input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline machines: no calls home

TOP_K = 5
NO_APP_ENV = "PIPELINE_NO_APP"  # set by run_all.sh and the tests: an executed copy cannot serve a page


def photo_heatmap(predictor, image: str, text: str, cat3: str):
    """The photo with the Grad-CAM heatmap of the ensemble's first image-reading member (its first fold) for
    `cat3`, at the photo's size; None when no member reads images. The layer and method are the measured
    defaults (gradcam_defaults.json); a multimodal member sees the text as given (or none). The unit goes to the
    device in fp32 for the heatmap only (gradients of half-precision activations would quantise the map)."""
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from . import gradcam, kinds
    from .images import load_image
    from .inputs import Places, to_device

    member = next(((kind, units[0]) for kind, _, units in predictor.members if "image" in kinds.get(kind).reads), None)
    if member is None:
        return None
    kind, model = member[0], predictor.on_device([member[1]], torch.float32)[0]
    cfg, device = predictor.cfg, predictor.device
    places = Places(cfg, [text or ""], [image], kinds.get(kind).reads)
    batch = to_device(places.collate([places[0]]), device)  # the inputs the predictor gives this member
    pixels, fixed = batch["pixels"], None
    if "text" in kinds.get(kind).reads:
        tokens = {k: batch[k] for k in ("input_ids", "attention_mask")}
        fixed = {**gradcam.text_inputs(model, tokens), "text_present": batch["text_present"]}
    layer, method = gradcam.default_explainer(kind, gradcam.image_tower(model).kind)
    heat = gradcam.heatmaps(model, pixels, fixed, layer, method, targets=[predictor.taxonomy.cat3.index(cat3)])[0]
    photo = load_image(image)
    heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(photo.size, Image.BILINEAR)) / 255.0
    return Image.fromarray(show_cam_on_image(np.asarray(photo, dtype=np.float32) / 255.0, heat, use_rgb=True))


def answer(predictor, photo: str | None, text: str | None):
    """(hashtags, {cat3: probability} of the top 5, Grad-CAM overlay or None) for one place; a clear gr.Error
    for an empty input or an unreadable photo, a warning for a photo without text."""
    import gradio as gr

    from .images import probe_image
    from .predict import has_text

    text = text or ""
    if not photo and not has_text(text):
        raise gr.Error("Give a description of the place, a photo, or both.")
    if photo:
        error = probe_image(photo)
        if error:
            raise gr.Error(f"The photo cannot be read ({error}); upload a JPEG or PNG.")
    if not has_text(text):
        gr.Warning("No description: the text carries most of the signal, so the categories are weaker and there "
                   "are no keyword hashtags.")
    result = predictor.predict([photo or None], [text], top_k=TOP_K, check=False)[0]
    heat = photo_heatmap(predictor, photo, text if has_text(text) else "", result["cat3"]) if photo else None
    return result["hashtags"], dict(result["top_k"]), heat


def _photo_input():
    """gr.Image, except that a file it cannot decode still reaches `answer`, which says what is wrong with it
    (gr.Image itself fails before any handler runs, with a generic error). Wrapped on the instance: a subclass
    of a gradio component makes gradio write a .pyi file beside this module at import."""
    import gradio as gr

    photo = gr.Image(type="filepath", label="Photo (optional)")
    decode = photo.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Exception:  # PIL raises many types for undecodable data
            return getattr(payload, "path", None)

    photo.preprocess = preprocess
    return photo


def build_app(predictor):
    """The page (a gr.Blocks) over a loaded Predictor; its endpoint `/hashtags` is what the test client calls."""
    import gradio as gr

    with gr.Blocks(title="Hashtags for a place") as app:
        gr.Markdown(f"## Hashtags for a place\nModel: run `{predictor.run_dir.name}` (the ensemble that wrote its "
                    f"submission). Give a description, a photo, or both.")
        with gr.Row():
            with gr.Column():
                photo = _photo_input()
                text = gr.Textbox(lines=6, label="Description (overview)",
                                  placeholder="서울 성수동의 꽃게찜 전문 식당으로 ...")
                button = gr.Button("Hashtags", variant="primary")
            with gr.Column():
                tags = gr.Textbox(label="Hashtags: category path, then keywords")
                top = gr.Label(num_top_classes=TOP_K, label=f"Top {TOP_K} cat3")
                cam = gr.Image(type="pil", label="Where the image model looks (Grad-CAM for the chosen cat3)")
        button.click(lambda p, t: answer(predictor, p, t), [photo, text], [tags, top, cam], api_name="hashtags")
    return app


def show(run, device: str = "auto"):
    """The page inline in a notebook (Jupyter, Colab); in an executed copy (run_all.sh, the tests) only how to
    open it, since nothing would serve it after the run. `run`: a loaded Predictor or a run folder, whose
    predictor already loaded in this process (06's) serves the page: a second one would hold every member again."""
    from .predict import Predictor, load_predictor

    run_dir = run.run_dir if isinstance(run, Predictor) else run
    if os.environ.get(NO_APP_ENV):
        print(f"try it in a page: python -m utils.app --run {run_dir}")
        return None
    predictor = run if isinstance(run, Predictor) else load_predictor(run, device)
    return build_app(predictor).launch(inline=True, prevent_thread_lock=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="A page to try a run's hashtag predictor (Gradio).")
    parser.add_argument("--run", default=None, help="the run folder (default: the most recent run under --output-dir)")
    parser.add_argument("--output-dir", default=None, help="where ./run_all.sh wrote its runs (default outputs/)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda, cuda:1")
    parser.add_argument("--port", type=int, default=None, help="default: 7860, or the next free one")
    parser.add_argument("--share", action="store_true", help="also a public gradio.live link (needs internet)")
    args = parser.parse_args(argv)
    from .predict import PredictionError, Predictor, latest_run

    try:
        run_dir = Path(args.run) if args.run else latest_run(args.output_dir)
        print(f"loading run {run_dir}", file=sys.stderr)
        predictor = Predictor(run_dir, args.device)
    except (PredictionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    build_app(predictor).launch(server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
