"""Every constant the plan's arithmetic rests on, in one table: its value, unit and where it comes from.

Why one table: a figure of the plan is only as good as what it assumes; `--json` names, for each figure, the rows
below it rests on, so that a reader sees which numbers were measured and which were guessed. `basis` is one of
  assumed   an estimate nobody measured for this pipeline (replace it when a measurement exists);
  measured  measured, where the source says;
  vendor    a data sheet's or a platform's stated figure;
  code      what this repository's code does (a batch size, a byte count of what it saves).
"""
from __future__ import annotations

from dataclasses import dataclass

GB = 2**30


@dataclass(frozen=True)
class Constant:
    value: object
    unit: str
    basis: str      # assumed, measured, vendor or code
    source: str


TABLE = {
    # GPU and host memory
    "CUDA_CONTEXT_GB": Constant(1.5, "GiB per GPU", "assumed", "CUDA context, cuBLAS/cuDNN workspaces outside "
                                "torch's allocator (docs/benchmarks.md)"),
    "USABLE": Constant(0.95, "share", "assumed", "share of a card's, RAM's or disk's nominal size a plan may fill "
                       "(fragmentation)"),
    "HOST_BASE_GB": Constant(2.5, "GiB", "assumed", "a notebook's process: torch, transformers, timm, the pipeline "
                             "and Kiwi measured at 1.2 GB on the CPU, CUDA's libraries and context about 1.3 more "
                             "assumed; gpu_check's phase 'host' replaces it"),
    "WORKER_GB": Constant(0.4, "GiB per worker", "assumed", "one DataLoader worker decoding 384 px images"),
    "TFIDF_RAM_GB": Constant(4.5, "GiB", "measured", "a TF-IDF fit at the real data's size, the larger candidate "
                             "(views: L-BFGS over 100,000 character features x 128 classes; "
                             "benchmarks/results/tfidf-scale.csv)"),
    "HOST_BYTES_BUILD": Constant(8, "bytes per parameter", "assumed", "host RAM while a unit is built or loaded: "
                                 "its fp32 weights and one state-dict copy"),
    "GRADCAM_ACT_FACTOR": Constant(1.2, "x fp32 activations", "assumed", "Grad-CAM's pixel gradients through the "
                                   "image tower: its fp32 training activations and a fifth more"),
    "BYTES_TRAINED": Constant(18, "bytes per trained parameter", "code", "fp32 weights 4, gradients 4, AdamW "
                              "moments 8, autocast's cached half copy 2 (utils/training.py)"),
    "BYTES_STEP_EXTRA": Constant(4, "bytes per trained parameter", "code", "AdamW's foreach step: one fp32 "
                                 "temporary (sqrt of the second moment)"),
    "BYTES_DDP": Constant(4, "bytes per trained parameter", "code", "DistributedDataParallel's gradient buckets "
                          "(gradient_as_bucket_view is off)"),
    "BYTES_LAST": Constant(12, "bytes per trained parameter", "code", "last.pt: trainable fp32 weights and both "
                           "AdamW moments (utils/training.py save_last)"),
    "BYTES_BEST": Constant(4, "bytes per trained parameter", "code", "best.pt: trainable fp32 weights"),
    # batches the code uses
    "VALIDATION_BATCH": Constant(256, "items", "code", "training.predict's batch: validation every epoch, test "
                                 "rows of K-fold units"),
    "PREDICT_BATCH": Constant(32, "items", "code", "the predictor's batch (utils/predict.py)"),
    "PREDICT_BLOCK_ROWS": Constant({"cpu": 512, "cuda": 2048}, "rows", "code", "the predictor's block "
                                   "(utils/predict.py BLOCK_ROWS): on a GPU every member's units cross to the card "
                                   "once per block"),
    "CATALOGUE_CHUNK_ROWS": Constant(1024, "rows", "code", "a catalogue's chunk (utils/catalogue.py CHUNK_ROWS), "
                                     "predicted in one call: on a GPU one block"),
    "ENCODE_BATCH": Constant({"text": 16, "image": 64}, "items", "code", "the caching pass (utils/features.py "
                             "encode_texts / encode_images)"),
    "GRADCAM_BATCH": Constant(16, "items", "code", "utils/gradcam.py explain"),
    # speed
    "IMAGES_PER_CORE": Constant(129.0, "images/s per core", "measured", "decode + augment + normalise at 384 px, "
                                "one core of a 2-core CPU (docs/benchmarks.md); gpu_check measures the loader on "
                                "the GPU machine"),
    "STEP_SECONDS": Constant(0.01, "s", "assumed", "least time of one optimiser micro-step (launches, Python)"),
    "HOST_TO_DEVICE_GBS": Constant(10.0, "GB/s", "assumed", "weights copied from pageable host memory to a GPU "
                                   "(PCIe 3 to 5 x16 carry 12 to 50 GB/s from pinned memory, pageable copies less)"),
    "TFIDF_SGD_SECONDS_PER_1K": Constant(3.8, "s per 1,000 training rows", "measured", "a TF-IDF fit of the SGD "
                                         "candidate (02's experts, or `tfidf_classifier=sgd`) at the real data's "
                                         "size: 51.6 s for 13,588 rows (benchmarks/results/tfidf-scale.csv)"),
    "TFIDF_SGD_RAM_GB": Constant(1.1, "GiB", "measured", "the same fit's peak (benchmarks/results/tfidf-scale.csv)"),
    "TFIDF_SECONDS_PER_1K": Constant(12.9, "s per 1,000 training rows", "measured", "a TF-IDF fit of the slower "
                                     "candidate (views) at the real data's size: 176 s for 13,588 rows of ~700 "
                                     "characters on 2 cores (benchmarks/results/tfidf-scale.csv)"),
    "DDP_EFFICIENCY": Constant(0.9, "speed-up per added GPU", "assumed", "data-parallel training"),
    "CHECKPOINT_COMPUTE": Constant(4 / 3, "x compute", "assumed", "gradient checkpointing recomputes the forward "
                                   "(a third of forward and backward)"),
    "TRAIN_OVER_FORWARD": Constant(3, "x forward FLOPs", "assumed", "a training item's FLOPs over an inference "
                                   "item's (backward costs twice the forward)"),
    "GRADCAM_FLOPS_FACTOR": Constant(8, "x training FLOPs", "assumed", "one explained item of 07: several forward "
                                     "and backward passes of the fusion model"),
    "SESSION_USABLE": Constant(0.9, "share", "assumed", "share of a platform session that trains (start-up, "
                               "caching, saving take the rest)"),
    "MIN_MICRO_BATCH": Constant(8, "items", "assumed", "below this micro-batch, gradient checkpointing with a "
                                "larger one is faster"),
    # the share of a card's tensor-core peak a fine-tune reaches (gpu_check measures items/s on the card)
    "MFU_T4": Constant(0.3, "share of peak", "assumed", "fp16 fine-tune on a T4"),
    "MFU_A100": Constant(0.4, "share of peak", "assumed", "bf16 fine-tune on an A100"),
    "MFU_H100": Constant(0.35, "share of peak", "assumed", "bf16 fine-tune on an H100"),
    "MFU_DETECTED": Constant(0.3, "share of peak", "assumed", "any GPU found at run time"),
    "MFU_CPU": Constant(0.5, "share of peak", "assumed", "the CPU, with CPU_TFLOPS_PER_CORE"),
    "CPU_TFLOPS_PER_CORE": Constant(0.05, "TFLOPS per core", "assumed", "a CPU core's peak"),
    "UNKNOWN_PEAK_TFLOPS": Constant(65.0, "TFLOPS", "assumed", "a GPU missing from PEAK_TFLOPS: a T4's peak"),
    # platforms' figures that the platform does not state
    "KAGGLE_CACHE_DISK_GB": Constant(50.0, "GiB", "assumed", "Kaggle states no size for /tmp's disk; the run "
                                     "checks what it finds"),
    "CLOUD_DISK_GB": Constant(200.0, "GiB", "assumed", "the disk of the a100-40 and h100-80 cloud VMs"),
    "H100_VM_RAM_GB": Constant(200.0, "GiB", "assumed", "a single-H100 cloud VM's RAM"),
    "H100_VM_CORES": Constant(16, "cores", "assumed", "a single-H100 cloud VM's cores"),
    "LARGEST_CATALOGUE": Constant(270_000, "places", "assumed", "the upper end of what the Korea Tourism "
                                  "Organization's open API lists (100,000 to 270,000 places): the catalogue to tag"),
    # the data
    "REAL_ROWS": Constant((16986, 7280), "rows", "measured", "the contest's train and test rows (shared/README.md)"),
    "SIZES": Constant({"cat1": 6, "cat2": 18, "cat3": 128}, "classes", "code", "the Dacon label tree: the heads' "
                      "widths (data/dacon_tourism_taxonomy.csv)"),
    "AUGMENT_VARIANTS": Constant(8, "fits", "code", "03: none, 4 imbalance options, 3 augmented-copy variants"),
    # benchmarks/gpu_check.py: how far a measurement may miss the plan and still pass
    "MEMORY_SLACK": Constant(1.05, "x planned peak", "assumed", "the allocator rounds blocks: a measured peak up to "
                             "5% over the plan passes"),
    "SPEED_SLACK": Constant(0.8, "x planned items/s", "assumed", "the plan's utilisation is an assumption: 80% of "
                            "its items/s passes"),
}

CUDA_CONTEXT_GB = TABLE["CUDA_CONTEXT_GB"].value
USABLE = TABLE["USABLE"].value
HOST_BASE_GB = TABLE["HOST_BASE_GB"].value
WORKER_GB = TABLE["WORKER_GB"].value
HOST_BYTES_BUILD = TABLE["HOST_BYTES_BUILD"].value
GRADCAM_ACT_FACTOR = TABLE["GRADCAM_ACT_FACTOR"].value
BYTES_TRAINED = TABLE["BYTES_TRAINED"].value
BYTES_STEP_EXTRA = TABLE["BYTES_STEP_EXTRA"].value
BYTES_DDP = TABLE["BYTES_DDP"].value
BYTES_LAST = TABLE["BYTES_LAST"].value
BYTES_BEST = TABLE["BYTES_BEST"].value
VALIDATION_BATCH = TABLE["VALIDATION_BATCH"].value
PREDICT_BATCH = TABLE["PREDICT_BATCH"].value
PREDICT_BLOCK_ROWS = TABLE["PREDICT_BLOCK_ROWS"].value
CATALOGUE_CHUNK_ROWS = TABLE["CATALOGUE_CHUNK_ROWS"].value
HOST_TO_DEVICE_GBS = TABLE["HOST_TO_DEVICE_GBS"].value
ENCODE_BATCH = TABLE["ENCODE_BATCH"].value
GRADCAM_BATCH = TABLE["GRADCAM_BATCH"].value
IMAGES_PER_CORE = TABLE["IMAGES_PER_CORE"].value
STEP_SECONDS = TABLE["STEP_SECONDS"].value
TFIDF_SECONDS_PER_1K = TABLE["TFIDF_SECONDS_PER_1K"].value
DDP_EFFICIENCY = TABLE["DDP_EFFICIENCY"].value
CHECKPOINT_COMPUTE = TABLE["CHECKPOINT_COMPUTE"].value
TRAIN_OVER_FORWARD = TABLE["TRAIN_OVER_FORWARD"].value
GRADCAM_FLOPS_FACTOR = TABLE["GRADCAM_FLOPS_FACTOR"].value
SESSION_USABLE = TABLE["SESSION_USABLE"].value
MIN_MICRO_BATCH = TABLE["MIN_MICRO_BATCH"].value
REAL_ROWS = TABLE["REAL_ROWS"].value
LARGEST_CATALOGUE = TABLE["LARGEST_CATALOGUE"].value
SIZES = TABLE["SIZES"].value
AUGMENT_VARIANTS = TABLE["AUGMENT_VARIANTS"].value
MEMORY_SLACK = TABLE["MEMORY_SLACK"].value
SPEED_SLACK = TABLE["SPEED_SLACK"].value


def value(name: str):
    """A constant of the table by name (platforms.py reads its rows through this)."""
    return TABLE[name].value


def as_json() -> dict:
    """The table for `--json`: name -> value, unit, basis, source."""
    return {name: {"value": list(row.value) if isinstance(row.value, tuple) else row.value, "unit": row.unit,
                   "basis": row.basis, "source": row.source} for name, row in TABLE.items()}


def rests_on(where: str | None, *names: str) -> dict:
    """One figure's provenance: what measured it (`where`, and the measured constants among `names`) and the
    assumed constants it rests on; constants of the code or a data sheet are facts and not listed."""
    names = {n for n in names if n}
    return {"measured": ([where] if where else []) + sorted(n for n in names if TABLE[n].basis == "measured"),
            "assumed": sorted(n for n in names if TABLE[n].basis == "assumed")}


def merged(*provenances: dict) -> dict:
    """The provenance of a figure made of others (a total): everything each of them rests on."""
    return {key: sorted({x for p in provenances for x in p[key]}) for key in ("measured", "assumed")}
