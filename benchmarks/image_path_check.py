"""What the image models of a profile are fed and how much they train, on a small dataset in the real layout
(tests/foreign_data.py) with Lite0's ImageNet weights as a timm weights file (as benchmarks/foreign_full_run.sh).

    python benchmarks/image_path_check.py [--profile full] [--rows 600] [--set KEY=VALUE ...] [--train]

Prints, on the CPU, in about a minute (`--train`: a few more seconds):
* pixels: the end-to-end path (raw rows, collated and moved to the device as training does) against the cached
  path (`inputs.image_tensor`) on validation rows (must be equal), and how much augmentation changes
  training rows (the four albumentations transforms fire independently: about 1/16 of the rows unchanged);
* BatchNorm: layers left in training mode by `model.train()` (must be 0) and trainable BN parameters per kind;
* schedules: per image kind and stage, the training mode, epochs, optimiser steps per epoch and in all, and the
  learning rates, on the run's validation split and on one K-fold fold (the profile's against the demo's);
* `--train`: image_frozen trained on cached states (the same pixels, see above, in a fraction of the time)
  under the profile's schedule and the demo's, with the
  validation weighted F1 of cat3, the epoch kept (best.pt: what a fine-tune warm-starts from) and the epoch
  of lowest validation loss.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("PIPELINE_QUIET_BARS", "1")

KINDS = ("image_frozen", "image_finetuned")


def _weights_file(work: Path) -> Path:
    path = work / "tf_efficientnet_lite0.safetensors"
    if not path.exists():
        from safetensors.torch import save_file

        from utils.backbones import image_backbone

        model = image_backbone("efficientnet-lite0-offline", classifier=True).model
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _start(profile: str, data: Path, work: Path, settings: dict):
    from utils.run import start

    with contextlib.redirect_stdout(io.StringIO()):
        run = start(profile, str(data), str(work / "outputs"), 0, f"image-path-{profile}", settings)
        ds = run.dataset()
        train_idx, val_idx = run.validation_split(ds)
    return run, ds, train_idx, val_idx


def _steps(n_rows: int, tc) -> tuple[int, int, int]:
    """(epochs, steps per epoch, optimiser steps in all), as training.fit counts them."""
    rows = n_rows if not tc.steps_per_epoch else min(n_rows, tc.steps_per_epoch * tc.batch_size * tc.grad_accum)
    per_epoch = math.ceil(rows / tc.batch_size / tc.grad_accum)
    epochs = max(tc.epochs, math.ceil(tc.min_steps / max(1, per_epoch)))
    return epochs, per_epoch, per_epoch * epochs


def _to_device(batch: dict) -> dict:
    try:
        from utils.inputs import to_device
    except ImportError:  # before pixels travelled as uint8
        from utils.training import _to as to_device
    return to_device(batch, "cpu")


def check_pixels(ds, cfg, train_idx, val_idx) -> None:
    import torch

    from utils.experiments import model_data
    from utils.inputs import image_tensor

    data = model_data(ds, cfg, ["image_finetuned"]) if cfg.schedule("image_finetuned").training_mode == "end_to_end" \
        else None
    if data is None or not hasattr(data, "for_training"):
        print("pixels: image_finetuned does not train end to end in this profile: nothing to compare")
        return
    mean, std = data.image.mean, data.image.std

    def clean(rows):
        return torch.stack([image_tensor(data.photos[i], cfg.image_size, mean, std) for i in rows])

    rows = [int(i) for i in val_idx[:32] if data.photos[int(i)] is not None]
    got = _to_device(data.collate([data[i] for i in rows]))["pixels"]
    print(f"pixels, validation rows: end to end vs cached path max |diff| {float((got - clean(rows)).abs().max()):.2e} "
          f"({got.dtype}, range {float(got.min()):.2f}..{float(got.max()):.2f}; mean {mean}, std {std})")
    view = data.for_training(train_idx, 0)
    rows = [int(i) for i in train_idx[:128] if data.photos[int(i)] is not None]
    got = _to_device(view.collate([view[i] for i in rows]))["pixels"]
    change = (got - clean(rows)).abs().mean((1, 2, 3))
    print(f"pixels, training rows (image_augment={cfg.image_augment}): mean |augmented - clean| "
          f"{float(change.mean()):.3f}; unchanged {int((change == 0).sum())} of {len(rows)} "
          f"(independent transforms at p=0.5: about {len(rows) / 16:.0f})")


def check_batchnorm(ds, cfg) -> None:
    import torch

    from utils.models import build_model

    for kind in KINDS:
        model = build_model(kind, cfg, ds.taxonomy.sizes, 0).train()
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        print(f"batchnorm, {kind} ({cfg.schedule(kind).training_mode}): {sum(m.training for m in bns)} of {len(bns)} "
              f"layers in training mode after model.train(); trainable BN tensors "
              f"{sum(p.requires_grad for m in bns for p in m.parameters())}; trainable parameters "
              f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}")


def schedule_rows(cfg, n_train: int, n_fold_train: int) -> list[str]:

    lines = []
    for kind in KINDS:
        for stage, rows in ((None, n_train), ("kfold", n_fold_train)):
            tc = cfg.schedule(kind, stage)
            epochs, per_epoch, total = _steps(rows, tc)
            lines.append(f"  {cfg.profile:<5} {kind:<16} {stage or '04':<6} {cfg.schedule(kind, stage).training_mode:<10} "
                         f"{rows:>5} rows  {epochs:>3} epochs x {per_epoch:>3} steps = {total:>5} optimiser steps  "
                         f"lr {tc.lr:g}  encoder_lr {tc.encoder_lr:g}  warmup {tc.warmup_ratio:g}  "
                         f"rows/step {tc.batch_size * tc.grad_accum}")
    return lines


def train_frozen(ds, cfg, train_idx, val_idx, work: Path, label: str, **overrides) -> None:
    import numpy as np

    from utils.experiments import fit_model, model_data

    data = model_data(ds, cfg, ["image_frozen"])
    with contextlib.redirect_stdout(io.StringIO()):
        trained = fit_model("image_frozen", data, train_idx, val_idx, ds, cfg, work / "runs" / label, "image_frozen",
                            0, **overrides)
    history = trained.history
    lowest = int(np.argmin([h["val_loss_cat3"] for h in history]))
    print(f"train, image_frozen ({label}, {cfg.schedule('image_frozen').training_mode}): best validation weighted F1 "
          f"{max(h['val_weighted_f1_cat3'] for h in history):.4f} in {len(history)} epochs; best.pt is epoch "
          f"{trained.best_epoch + 1} (val loss {history[trained.best_epoch]['val_loss_cat3']:.3f}), lowest val loss "
          f"epoch {lowest + 1} ({history[lowest]['val_loss_cat3']:.3f}); {trained.seconds:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--rows", type=int, default=600, help="training rows of the dataset (test rows: a quarter)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "image-path-check"))
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--train", action="store_true", help="also train image_frozen under both schedules")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads())
    import foreign_data
    from utils.config import apply_settings, parse_settings
    from utils.splits import kfold

    work = Path(args.work)
    data = work / f"data-{args.rows}"
    if not (data / "train.csv").exists():
        foreign_data.write(data, args.rows, max(1, args.rows // 4))
    base = {"image_model": "tf_efficientnet_lite0", "image_weights": str(_weights_file(work)), "image_size": 128,
            "max_len": 64, "device": "cpu", "n_folds": 2, "epochs": 3, "image_finetuned.epochs": 3,
            "cache_dir": str(work / "cache")}
    user = parse_settings(args.sets)
    run, ds, train_idx, val_idx = _start(args.profile, data, work, {**base, **user})
    cfg = run.cfg
    print(f"profile {cfg.profile}, {len(ds.train)} / {len(ds.test)} rows, image {cfg.image_model} {cfg.image_size} px; "
          f"settings {dict(sorted({**base, **user}.items()))}")
    check_pixels(ds, cfg, train_idx, val_idx)
    check_batchnorm(ds, cfg)
    folds = kfold(ds.labels("cat3"), cfg.n_folds, cfg.seed)
    fold_train = int((folds != 0).sum())
    demo_settings = {"image_model": "efficientnet-lite0-offline", "cache_dir": str(work / "cache"), "device": "cpu",
                     **{k: v for k, v in user.items() if k not in base}}
    demo, *_ = _start("demo", data, work, demo_settings)
    print("schedules (optimiser steps as training.fit counts them; K-fold: fold 0's training rows):")
    for line in schedule_rows(cfg, len(train_idx), fold_train) + schedule_rows(demo.cfg, len(train_idx), fold_train):
        print(line)
    if args.train:  # on cached states: the end-to-end path feeds the same pixels (above), at a fraction of the time
        cached = {"image_frozen.training_mode": "cached"}
        train_frozen(ds, apply_settings(cfg, cached), train_idx, val_idx, work, f"{cfg.profile}-schedule")
        train_frozen(ds, apply_settings(demo.cfg, cached), train_idx, val_idx, work, "demo-schedule")
    return 0


if __name__ == "__main__":
    sys.exit(main())
