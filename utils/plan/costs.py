"""What each fit costs on a platform: GPU memory per card, host RAM, disk (kept and at its fullest) and hours, and
for each of these figures what it rests on (measured where, assumed which constants: assumed.rests_on).

Why per fit: a run is refused or adapted fit by fit, naming the fit that does not fit; the totals follow.
"""
from __future__ import annotations

import math

from .. import kinds
from .assumed import (BYTES_BEST, BYTES_DDP, BYTES_LAST, BYTES_STEP_EXTRA, BYTES_TRAINED, CATALOGUE_CHUNK_ROWS,
                      CHECKPOINT_COMPUTE, CUDA_CONTEXT_GB, DDP_EFFICIENCY, ENCODE_BATCH, GB, GRADCAM_ACT_FACTOR,
                      GRADCAM_BATCH, GRADCAM_FLOPS_FACTOR, HOST_BYTES_BUILD, HOST_TO_DEVICE_GBS, IMAGES_PER_CORE,
                      LARGEST_CATALOGUE, PREDICT_BATCH, PREDICT_BLOCK_ROWS, STEP_SECONDS, TABLE, TRAIN_OVER_FORWARD,
                      VALIDATION_BATCH, WORKER_GB, rests_on)
from .fits import Fit, kfold_members
from .measured import (_encoder_figures, _encoder_params, _measured, _state_bytes, _with_measurements, figures,
                       host_base_gb, host_base_source, signature)
from .platforms import Platform, mfu_constant, precision_on
from .tracing import HALF, Figures
from .weightless import reads

COUNTED = "parameters and shapes of the models built on the meta device"


def _processes(cfg, platform: Platform) -> int:
    """Processes per training (distributed.processes_for on that platform): `processes`, or one per GPU."""
    return cfg.processes or max(1, platform.gpus)


def _workers(cfg, platform: Platform) -> int:
    """DataLoader workers per process (inputs.loader_workers' rule on that platform)."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return max(1, platform.cpu_cores // _processes(cfg, platform) - 1) if platform.gpus else 0


def peak_flops(platform: Platform) -> float:
    """FLOP/s a fine-tune reaches on one card: its tensor-core peak at the platform's assumed utilisation."""
    return max(platform.peak_tflops, 1e-3) * 1e12 * platform.mfu


def loader_rate(workers: int) -> float:
    """Photos per second the loader decodes and augments at 384 px with `workers` worker processes."""
    return max(1, workers) * IMAGES_PER_CORE


def _rates(fig: Figures, fit: Fit, cfg, platform: Platform, measured: bool = True) -> tuple[float, float]:
    """Training and inference items/s of one unit: FLOPs at the assumed utilisation (GPU-measured where the same
    GPU model ran gpu_check), bounded by the loader's decoding for raw images and by per-step overhead."""
    peak = peak_flops(platform)
    train = peak / max(fig.flops * (CHECKPOINT_COMPUTE if fit.checkpointing else 1), 1.0)
    infer = peak / max(fig.flops / TRAIN_OVER_FORWARD, 1.0)
    row = _measured_training(fit, cfg, platform) if measured else None
    if row and row["same_gpu"] and row.get("items_per_s"):
        train = float(row["items_per_s"])
    if fit.reads == "raw" and "image" in kinds.get(fit.kind).reads:
        loader = loader_rate(_workers(cfg, platform))
        train, infer = min(train, loader), min(infer, loader)
    train = min(train, max(1, fit.micro_batch) / STEP_SECONDS) * (1 + (fit.processes - 1) * DDP_EFFICIENCY)
    return train, min(infer, VALIDATION_BATCH / STEP_SECONDS)


def _measured_training(fit: Fit, cfg, platform: Platform) -> dict | None:
    """gpu_check's newest training row for this fit's kind, checkpointing and model shape."""
    return _measured(fit.kind, "train", platform, fit.checkpointing, signature(fit.kind, cfg, fit.stage))


def _rate_provenance(fit: Fit, cfg, platform: Platform) -> dict:
    """What a trained fit's hours rest on: gpu_check's items/s on the same GPU model, or FLOPs over the assumed
    utilisation; the loader's measured rate for raw photos; the assumed per-step least time and DDP scaling."""
    row = _measured_training(fit, cfg, platform)
    measured = bool(row and row["same_gpu"] and row.get("items_per_s"))
    photos = fit.reads == "raw" and "image" in kinds.get(fit.kind).reads
    return rests_on(f"training items/s on the GPU: benchmarks/results/{row['file']}" if measured else
                    "FLOPs traced on the CPU", mfu_constant(platform), "TRAIN_OVER_FORWARD", "STEP_SECONDS",
                    "" if measured or not fit.checkpointing else "CHECKPOINT_COMPUTE",
                    "IMAGES_PER_CORE" if photos else "", "DDP_EFFICIENCY" if fit.processes > 1 else "")


def _train_hours(fit: Fit, cfg, train_rate: float, infer_rate: float) -> float:
    """Every epoch of the schedule (early stopping can end a fit sooner), validation each epoch, then test rows."""
    s = cfg.schedule(fit.kind, fit.stage)
    train_rows, val_rows, test_rows = fit.rows
    effective = max(1, fit.micro_batch * fit.grad_accum)
    per_epoch = min(train_rows, s.steps_per_epoch * effective) if s.steps_per_epoch else train_rows
    epochs = max(s.epochs, math.ceil(s.min_steps / max(1, math.ceil(per_epoch / effective))))
    seconds = epochs * (per_epoch / train_rate + val_rows / infer_rate) + test_rows / infer_rate
    return fit.units * seconds / max(1, fit.at_once) / 3600


def _train_phases(fig: Figures, micro: int, ckpt: bool, precision: str, world: int) -> dict[str, float]:
    """Bytes on one GPU in each phase of a fit: forward and backward (weights, gradients, moments, autocast's half
    copies, activations), AdamW's step (its foreach temporaries), validation (weights and moments, an inference
    batch). The CUDA context comes on top."""
    half = precision in HALF
    trained, frozen = fig.trained, fig.total - fig.trained
    act = (fig.act_ckpt if ckpt else fig.act_half) if half else fig.act_fp32
    fixed = 4 * frozen + (BYTES_DDP * trained if world > 1 else 0)
    return {"forward": fixed + (BYTES_TRAINED - (0 if half else 2)) * trained + act * math.ceil(micro / world),
            "step": fixed + (16 + BYTES_STEP_EXTRA) * trained,
            "validation": fixed + 12 * trained + fig.infer * VALIDATION_BATCH}


def expected(kind: str, cfg, platform: Platform, processes: int = 1) -> dict:
    """What the plan expects of one single-model unit of `kind` (04/05) as `cfg` trains it, on `platform`, in
    `processes` data-parallel processes, from the traced figures alone (benchmarks/gpu_check.py compares its
    measurements with these): the allocator's peak per GPU in training and in validation (GB), training and
    inference items/s of the unit, activation and inference MiB per item."""
    fig = figures(kind, cfg)
    fit = Fit("05", kind, "check", micro_batch=cfg.batch_size, grad_accum=cfg.grad_accum, processes=processes,
              checkpointing=cfg.grad_checkpointing, reads=reads(kind, cfg))
    phases = _train_phases(fig, fit.micro_batch, fit.checkpointing, precision_on(cfg, platform), processes)
    train_rate, infer_rate = _rates(fig, fit, cfg, platform, measured=False)
    act = fig.act_ckpt if fit.checkpointing else fig.act_half
    return {"train_gb": max(phases["forward"], phases["step"]) / GB, "predict_gb": phases["validation"] / GB,
            "items_per_s": train_rate, "infer_per_s": infer_rate, "act_mib_per_item": act / 2**20,
            "infer_mib_per_item": fig.infer / 2**20, "trained_params": fig.trained}


def _host(*names: str) -> dict:
    """Provenance of a host-RAM figure: the process's base (measured or assumed) and `names`."""
    where, assumed = host_base_source()
    return rests_on(where, assumed, *names)


def _device(fig_source: str, platform: Platform, *names: str) -> dict:
    """Provenance of a GPU-memory figure: the per-item bytes' source, the CUDA context on a GPU, and `names`."""
    source = "traced on the CPU (fake tensors)" if fig_source == "traced" else fig_source
    return rests_on(source, "CUDA_CONTEXT_GB" if platform.gpus else "", *names)


def _cost_trained(fit: Fit, cfg, platform: Platform) -> Fit:
    """A neural fit: its GPU memory at the configured micro-batch, host RAM, checkpoints and hours."""
    fig = _with_measurements(figures(fit.kind, cfg, fit.stage), fit.kind, platform, signature(fit.kind, cfg, fit.stage))
    processes = _processes(cfg, platform)
    fit.reads = reads(fit.kind, cfg, fit.stage)
    fit.processes = min(processes, max(1, platform.gpus)) if fit.reads == "raw" and fit.stage != "kfold" else 1
    fit.at_once = min(processes, fit.units) if fit.stage == "kfold" else 1
    fit.trained_params, fit.micro_batch, fit.grad_accum = fig.trained, cfg.batch_size, cfg.grad_accum
    fit.checkpointing = cfg.grad_checkpointing and fit.reads == "raw"
    precision = precision_on(cfg, platform)
    device_bytes = max(_train_phases(fig, fit.micro_batch, fit.checkpointing, precision, fit.processes).values())
    fit.gpu_memory_gb = (device_bytes / GB + CUDA_CONTEXT_GB) if platform.gpus else 0.0
    held = sum(4 * _encoder_params(m, cfg) for m in kinds.get(fit.kind).reads) if fit.reads == "raw" else 0
    workers = _workers(cfg, platform) if fit.reads == "raw" else 0
    per_process = host_base_gb() * GB + held + max(HOST_BYTES_BUILD * fig.total, BYTES_LAST * fig.trained) + \
        (workers * WORKER_GB * GB if fit.reads == "raw" else 0)
    per_process += 0 if platform.gpus else device_bytes
    fit.host_ram_gb = per_process * max(fit.processes, fit.at_once) / GB
    fit.kept_gb = fit.units * BYTES_BEST * fig.trained / GB
    fit.disk_gb = fit.kept_gb + fit.at_once * 2 * BYTES_LAST * fig.trained / GB
    fit.hours = _train_hours(fit, cfg, *_rates(fig, fit, cfg, platform))
    fit.provenance = {"gpu_memory_gb": _device(fig.source, platform),
                      "host_ram_gb": _host("HOST_BYTES_BUILD", "WORKER_GB" if workers else ""),
                      "disk_gb": rests_on(COUNTED), "kept_gb": rests_on(COUNTED),
                      "hours": _rate_provenance(fit, cfg, platform)}
    return fit


def _cost_tfidf(fit: Fit, cfg, platform: Platform) -> Fit:
    """A TF-IDF fit: the CPU only. 02's experts are SGD; 04's and 06's member may choose the slower, larger views."""
    fit.reads, fit.at_once = "text", 1
    sgd = fit.notebook == "02" or cfg.tfidf_classifier == "sgd"
    ram, rate = ("TFIDF_SGD_RAM_GB", "TFIDF_SGD_SECONDS_PER_1K") if sgd else ("TFIDF_RAM_GB", "TFIDF_SECONDS_PER_1K")
    fit.host_ram_gb = host_base_gb() + TABLE[ram].value
    fit.hours = fit.units * fit.rows[0] / 1000 * TABLE[rate].value / 3600
    fit.provenance = {"host_ram_gb": _host(ram), "hours": rests_on(None, rate)}
    return fit


def _cost_cache(fit: Fit, cfg, platform: Platform) -> Fit:
    """An encoding pass: the frozen encoder over every row in inference, written in 1,024-row chunks."""
    from ..features import CHUNK_ROWS, needs_token_states

    modality, rows = fit.reads, fit.rows[2]
    fig = _encoder_figures(modality, cfg)
    per_row = _state_bytes(cfg, needs_token_states(cfg, modality))[modality]
    token_row = _state_bytes(cfg, True)[modality]
    fit.gpu_memory_gb = (4 * fig.total + fig.infer * ENCODE_BATCH[modality]) / GB + CUDA_CONTEXT_GB
    fit.gpu_memory_gb *= bool(platform.gpus)
    fit.host_ram_gb = host_base_gb() + (4 * fig.total + CHUNK_ROWS * token_row) / GB
    fit.kept_gb = fit.disk_gb = rows * per_row / GB
    rate = _encode_rate(fig, modality, cfg, platform)
    fit.hours = rows / rate / 3600
    fit.provenance = {"gpu_memory_gb": _device(fig.source, platform), "host_ram_gb": _host(),
                      "disk_gb": rests_on(COUNTED), "kept_gb": rests_on(COUNTED),
                      "hours": _encode_provenance(platform, "image" if modality == "image" else "")}
    return fit


def _encode_rate(fig: Figures, modality: str, cfg, platform: Platform) -> float:
    """Items/s of a caching pass: the encoder's forward, photos decoded in the loader's workers."""
    rate = peak_flops(platform) / max(fig.flops / TRAIN_OVER_FORWARD, 1.0)
    if modality == "image":
        rate = min(rate, loader_rate(_workers(cfg, platform)))
    return rate


def _encode_provenance(platform: Platform, photos: str) -> dict:
    return rests_on("FLOPs traced on the CPU", mfu_constant(platform), "TRAIN_OVER_FORWARD",
                    "IMAGES_PER_CORE" if photos else "")


def _cost_encode_copies(fit: Fit, cfg, platform: Platform) -> Fit:
    """03: the augmented copies' texts and photos encoded into memory (features.encode_texts / encode_images)."""
    copies = fit.rows[2]
    text, image = _encoder_figures("text", cfg), _encoder_figures("image", cfg)
    states = _state_bytes(cfg, True)
    fit.reads = "encode"
    fit.gpu_memory_gb = bool(platform.gpus) * (CUDA_CONTEXT_GB + max(
        4 * text.total + text.infer * ENCODE_BATCH["text"], 4 * image.total + image.infer * ENCODE_BATCH["image"]) / GB)
    fit.host_ram_gb = host_base_gb() + (4 * (text.total + image.total) + copies * sum(states.values())) / GB
    fit.hours = copies * (1 / _encode_rate(text, "text", cfg, platform) +
                          1 / _encode_rate(image, "image", cfg, platform)) / 3600
    fit.provenance = {"gpu_memory_gb": _device(text.source, platform), "host_ram_gb": _host(),
                      "hours": _encode_provenance(platform, "image")}
    return fit


def _neural_members(cfg) -> list[tuple[str, str]]:
    """The predictor's neural K-fold members (utils/predict.py) and what each reads in its K-fold fits: raw rows
    or cached states."""
    return [(kind, reads(kind, cfg, "kfold")) for kind in kfold_members(cfg) if kinds.get(kind).neural]


def _predictor_units(cfg, platform: Platform) -> tuple[list, list, int, int]:
    """The predictor's neural members on the platform: their figures and modes, the bytes of each member's units
    as held (half on a GPU machine; every unit of an end-to-end member holds its own encoders), the shared frozen
    encoders' parameters, and the bytes per weight."""
    units = cfg.n_folds * len(cfg.training_seeds)
    width = 2 if platform.gpus else 4
    members = [(figures(kind, cfg, "kfold"), mode) for kind, mode in _neural_members(cfg)]
    own = [units * width * (fig.total if mode == "raw" else fig.trained) for fig, mode in members]
    return members, own, sum(_encoder_params(m, cfg) for m in ("text", "image")), width


def _predict_seconds(cfg, platform: Platform, rows: float, block_rows: int = PREDICT_BLOCK_ROWS["cuda"]) -> float:
    """`rows` through the predictor at the assumed utilisation; on a GPU also the members' own units crossing to
    the card once per block of `block_rows` (the shared frozen encoders stay there, moved once with the caching
    towers)."""
    seconds = rows * _predict_flops(cfg) / peak_flops(platform)
    if platform.gpus:
        seconds += math.ceil(rows / block_rows) * sum(_predictor_units(cfg, platform)[1]) / (HOST_TO_DEVICE_GBS * 1e9)
    return seconds


def _block_host_bytes(cfg, platform: Platform) -> float:
    """A block's inputs waiting on the host while the members take turns (utils/predict.py `_inputs`): photos as
    decoded (uint8), tokens (int64 ids and mask) and, for the cached members, their encoder states (fp16 tokens,
    counted with the states below the top that only some read) and pooled vectors."""
    members = _neural_members(cfg)
    read = {m for kind, _ in members for m in kinds.get(kind).reads}
    cached = {m for kind, mode in members if mode != "raw" for m in kinds.get(kind).reads}
    states, pooled = _state_bytes(cfg, True), _state_bytes(cfg, False)
    row = (3 * cfg.image_size ** 2 if "image" in read else 0) + (16 * cfg.max_len if "text" in read else 0)
    row += sum(states[m] + pooled[m] for m in cached)
    return PREDICT_BLOCK_ROWS["cuda" if platform.gpus else "cpu"] * row


def _cost_predict(fit: Fit, cfg, platform: Platform) -> Fit:
    """06's predictor over the test rows (utils/predict.py): every member's units held on the host, one
    member's units at a time on the device."""
    members, own, shared, width = _predictor_units(cfg, platform)
    on_device = [o + fig.infer * PREDICT_BATCH for o, (fig, _) in zip(own, members)]
    fit.reads = "predict"
    fit.gpu_memory_gb = bool(platform.gpus) * ((width * shared + max(on_device, default=0)) / GB + CUDA_CONTEXT_GB)
    building = max((HOST_BYTES_BUILD * fig.total for fig, _ in members), default=0)  # one unit built in fp32
    fit.host_ram_gb = host_base_gb() + (4 * shared + sum(own) + building + _block_host_bytes(cfg, platform)) / GB
    fit.hours = _predict_seconds(cfg, platform, fit.rows[2]) / 3600
    fit.provenance = {"gpu_memory_gb": _device("traced", platform), "host_ram_gb": _host("HOST_BYTES_BUILD"),
                      "hours": rests_on("FLOPs traced on the CPU", mfu_constant(platform), "TRAIN_OVER_FORWARD",
                                        "HOST_TO_DEVICE_GBS" if platform.gpus else "")}
    return fit


def _predict_flops(cfg) -> float:
    """Forward FLOPs of one row through the predictor: the shared frozen encoders once, and every unit of an
    end-to-end member its own."""
    units = cfg.n_folds * len(cfg.training_seeds)
    own = sum(units * figures(kind, cfg, "kfold").flops for kind, mode in _neural_members(cfg) if mode == "raw")
    return (own + sum(_encoder_figures(m, cfg).flops for m in ("text", "image"))) / TRAIN_OVER_FORWARD


def tagging(cfg, platform: Platform) -> dict:
    """Rows/s of tagging a catalogue (`python -m utils.predict --csv --out`) on one card of the platform (a shard
    per card), or on its cores: the predictor's FLOPs per row at the assumed utilisation, after the photos (where
    a member reads them) are decoded: a block is read whole before its members run (utils/predict.py `_block`),
    by the loader's workers on a GPU, by the same cores on the CPU."""
    block = min(PREDICT_BLOCK_ROWS["cuda"], CATALOGUE_CHUNK_ROWS)
    seconds = _predict_seconds(cfg, platform, block, block) / block
    if any("image" in kinds.get(kind).reads for kind, _ in _neural_members(cfg)):  # photos decoded
        seconds += 1 / (loader_rate(_workers(cfg, platform)) if platform.gpus else IMAGES_PER_CORE * platform.cpu_cores)
    rate = 1 / seconds
    return {"rows_per_s": round(rate, 1), "largest_catalogue": LARGEST_CATALOGUE,
            "hours": round(LARGEST_CATALOGUE / rate / 3600, 2),
            "provenance": rests_on("FLOPs traced on the CPU", mfu_constant(platform), "TRAIN_OVER_FORWARD",
                                   "IMAGES_PER_CORE", "LARGEST_CATALOGUE",
                                   "HOST_TO_DEVICE_GBS" if platform.gpus else "")}


def _cost_gradcam(fit: Fit, cfg, platform: Platform) -> Fit:
    """07: the fusion model in fp32 on the device, gradients of the pixels through its image tower."""
    fusion, image = figures("fusion_transformer", cfg), _encoder_figures("image", cfg)
    fit.reads = "gradcam"
    fit.gpu_memory_gb = bool(platform.gpus) * ((4 * fusion.total + GRADCAM_ACT_FACTOR * image.act_fp32 *
                                                GRADCAM_BATCH) / GB + CUDA_CONTEXT_GB)
    fit.host_ram_gb = host_base_gb() + HOST_BYTES_BUILD * fusion.total / GB
    fit.hours = fit.rows[2] * GRADCAM_FLOPS_FACTOR * fusion.flops / peak_flops(platform) / 3600
    fit.provenance = {"gpu_memory_gb": _device("traced", platform, "GRADCAM_ACT_FACTOR"),
                      "host_ram_gb": _host("HOST_BYTES_BUILD"),
                      "hours": rests_on("FLOPs traced on the CPU", mfu_constant(platform), "GRADCAM_FLOPS_FACTOR")}
    return fit


def cost(fit: Fit, cfg, platform: Platform) -> Fit:
    """`fit` with its needs filled in for `cfg` on `platform`."""
    handler = {"text_tfidf": _cost_tfidf, "cache": _cost_cache, "encode": _cost_encode_copies,
               "predict": _cost_predict, "gradcam": _cost_gradcam}.get(fit.kind, _cost_trained)
    return handler(fit, cfg, platform)
