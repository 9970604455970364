"""What the full profile costs on a T4 and on A100/H100-class GPUs: ESTIMATES from quantities measured here.

    python benchmarks/gpu_estimate.py                 # measures on this machine (CPU is enough), prints the table
    python benchmarks/gpu_estimate.py --folds 5 --epochs 5 --mfu-t4 0.3

Measured here, on the full profile's architectures built from local configurations with random weights (no model
hub is reachable): a RoBERTa-large-shaped text encoder (24 layers, width 1024, klue's 32k vocabulary) at 256
tokens and timm's vit_large_patch32_384 at 384 px.
* parameters;
* FLOPs of one item's forward and backward (torch.utils.flop_counter: every matmul and attention counted);
* activation memory per item: the bytes autograd saves for backward, at batch 2 minus batch 1 (constant terms
  cancel), in fp32 and under bf16 autocast (on a GPU, fp16 autocast saves the same widths as bf16);
* the CPU's rate of the image data path at 384 px with 03's augmentation (decode, augment, normalise), per core.

Derived, and printed as estimates: items/s = FLOPs per item / (peak x an assumed utilisation, `--mfu-*`), GPU
memory = 16 bytes per trained parameter (fp32 weights and gradients, AdamW's two moments) + activations x batch +
1.5 GB (CUDA context, workspaces), the largest batch that fits each GPU with and without gradient
checkpointing (which keeps each layer's input, 24 x tokens x 1024 half-precision values per item, plus one layer's
activations while it recomputes), and hours per fold and per full run. The utilisation is the assumption that matters: 0.3 of the tensor-core peak is typical of
Hugging Face fine-tuning on a T4; replace the figures with measured ones when a GPU is at hand
(benchmarks/throughput.py on the GPU).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GPUS = {  # dense half-precision tensor-core peak, TFLOPS; memory, GB
    "T4 (fp16)": (65.0, 15.0),
    "A100 40GB (bf16)": (312.0, 40.0),
    "H100 80GB (bf16)": (989.0, 80.0),
}


def text_encoder():
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(vocab_size=32000, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1)
    return RobertaModel(config, add_pooling_layer=False)


def image_encoder():
    import timm

    return timm.create_model("vit_large_patch32_384", pretrained=False, num_classes=0)


def _inputs(kind: str, batch: int):
    import torch

    if kind == "text":
        return {"input_ids": torch.randint(5, 32000, (batch, 256)), "attention_mask": torch.ones(batch, 256, dtype=torch.long)}
    return {"x": torch.randn(batch, 3, 384, 384)}


def _forward(model, kind: str, inputs):
    out = model(**inputs)
    return (out.last_hidden_state if kind == "text" else out).float().mean()


def flops_per_item(model, kind: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        _forward(model, kind, _inputs(kind, 1)).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def saved_bytes(model, kind: str, batch: int, bf16: bool) -> int:
    """Bytes autograd keeps for backward over one forward pass (parameters themselves not counted)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(t):
        nonlocal total
        if t.untyped_storage().data_ptr() not in params:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = _forward(model, kind, _inputs(kind, batch))
    del loss
    return total


def image_path_rate(n: int = 64) -> float:
    """Items/s of one core decoding, augmenting and normalising bundled images at 384 px (RawRows.__getitem__)."""
    import numpy as np
    import torch

    from utils.config import build
    from utils.data import load_dataset
    from utils.rows import RawRows

    torch.set_num_threads(1)
    cfg = build("demo", {"image_size": 384, "image_augment": True, "training_mode": "end_to_end"})
    ds = load_dataset(ROOT / "data" / "generated", check_images=False, progress=False)
    rows = RawRows(ds, cfg, ("image",)).for_training(np.arange(n))
    rows[0]
    started = time.time()
    for i in range(1, n):
        rows[i]
    return (n - 1) / (time.time() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=16986)
    parser.add_argument("--test-rows", type=int, default=7280)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--mfu-t4", type=float, default=0.3)
    parser.add_argument("--mfu-a100", type=float, default=0.4)
    parser.add_argument("--mfu-h100", type=float, default=0.35)
    args = parser.parse_args(argv)
    import torch

    from utils.runtime import machine_description

    torch.manual_seed(0)
    print(f"machine: {machine_description()}")
    measured = {}
    for kind, build_encoder in (("text", text_encoder), ("image", image_encoder)):
        model = build_encoder().train()
        n_params = sum(p.numel() for p in model.parameters())
        started = time.time()
        flops = flops_per_item(model, kind)
        act = {name: saved_bytes(model, kind, 2, bf16) - saved_bytes(model, kind, 1, bf16)
               for name, bf16 in (("fp32", False), ("half", True))}
        measured[kind] = {"params": n_params, "flops": flops, "act": act}
        print(f"{kind}: {n_params / 1e6:.0f} M parameters; forward+backward {flops / 1e12:.3f} TFLOP per item; "
              f"activations saved for backward per item {act['fp32'] / 2**20:.0f} MiB fp32, "
              f"{act['half'] / 2**20:.0f} MiB under half-precision autocast ({time.time() - started:.0f} s)")
        del model
    rate = image_path_rate()
    print(f"image data path, 384 px with augmentation: {rate:.1f} items/s per CPU core (bundled images)")

    from utils.config import build

    full = build("full")
    t, i = measured["text"], measured["image"]
    def checkpointed(act: float, tokens: int) -> float:  # 24 layers of width 1024 in both encoders
        return 24 * tokens * 1024 * 2 + act / 24

    t_ckpt, i_ckpt = checkpointed(t["act"]["half"], 256), checkpointed(i["act"]["half"], 145)
    # kind: (FLOPs per training item, trained parameters, activations, checkpointed activations); a frozen model
    # trained end to end (the full profile's training_mode) runs its frozen encoder forward only, every epoch
    models = {"text_finetuned": (t["flops"], t["params"], t["act"]["half"], t_ckpt),
              "image_finetuned": (i["flops"], i["params"], i["act"]["half"], i_ckpt),
              "fusion_transformer": (t["flops"] + i["flops"], t["params"] + i["params"],
                                     t["act"]["half"] + i["act"]["half"], t_ckpt + i_ckpt),
              "text_frozen": (t["flops"] / 3, 0, 0, 0),
              "image_frozen": (i["flops"] / 3, 0, 0, 0),
              "late_fusion": ((t["flops"] + i["flops"]) / 3, 0, 0, 0)}
    mfu = dict(zip(GPUS, (args.mfu_t4, args.mfu_a100, args.mfu_h100)))
    fold_train = args.train_rows * (args.folds - 1) / args.folds
    fold_val = args.train_rows / args.folds
    print("\nESTIMATES (not measured on a GPU): items/s = FLOPs / (peak x utilisation); memory = 16 B/parameter + "
          "activations x batch + 1.5 GB")
    print(f"a fit: every epoch {fold_train:,.0f} training rows and {fold_val:,.0f} validation rows (inference: a third "
          f"of a training step), then {args.test_rows:,} test rows; the full profile's epochs, all of them "
          "(early stopping can end a fit sooner)")
    print("| model (full profile) | epochs | GPU | train items/s | hours per fit | batch that fits (no ckpt / ckpt) |")
    print("|---|---|---|---|---|---|")
    hours_of = {}
    for name, (flops, params, act, act_ckpt) in models.items():
        epochs = full.schedule(name).epochs
        for gpu, (peak, memory) in GPUS.items():
            rate_gpu = peak * 1e12 * mfu[gpu] / flops
            per_fit = (epochs * (fold_train + fold_val / 3) + args.test_rows / 3) / rate_gpu / 3600
            hours_of[name, gpu] = per_fit
            free = memory * 2**30 - 16 * params - 1.5 * 2**30
            fits = ("-" if not act else f"{max(0, int(free // act))} / {max(0, int(free // act_ckpt))}")
            print(f"| {name} | {epochs} | {gpu} | {rate_gpu:.0f} | {per_fit:.2f} | {fits} |")
    neural_experts = [k for k in full.label_expert_kinds if k in models]
    print(f"\nthe whole full profile, one seed (02: its experts {', '.join(full.label_expert_kinds)} x folds; 04/05: "
          "every model once; 06: K-fold of text_finetuned, image_finetuned and fusion_transformer, the likely auto "
          "members):")
    tuned = ("text_finetuned", "image_finetuned", "fusion_transformer")
    for gpu in GPUS:
        once = sum(hours_of[k, gpu] for k in models)
        experts = args.folds * sum(hours_of[k, gpu] for k in neural_experts)
        fine_tunes = sum(hours_of[k, gpu] for k in tuned)
        kfold, frozen = args.folds * fine_tunes, once - fine_tunes
        print(f"  {gpu}: 02 {experts:.1f} h + 04/05 {once:.1f} h (of which frozen-encoder models {frozen:.1f} h) + "
              f"06 {kfold:.1f} h = {experts + once + kfold:.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
