"""A resource plan before anything runs: what each fit of each notebook needs, and what the run adapts or refuses.

    python -m utils.plan --profile full --platform colab-t4          # one platform (default: the GPU found here)
    python -m utils.plan --profile full --platform all --json        # colab-t4, kaggle-2xt4, a100-40, h100-80
    python -m utils.plan --profile full --measure                    # recompute the per-item figures (a minute)
    python -m utils.plan --profile demo --measure                    # and the demo's, and tiny's (the tests')

Why: the full profile trains RoBERTa-large and ViT-L end to end; on a 15 GB T4 the fusion model alone holds
10 GB of weights, gradients and AdamW moments (12 during AdamW's step), a fusion `last.pt` is 7.8 GB (twice that
while it is rewritten), and the run takes many Colab sessions. A run that finds that out in its fourth hour wastes the
session. So a run starts from this plan: `adapt` changes only what leaves the training as it is, `problems` refuses
what still cannot fit, naming the `--set` that would make it fit, and `preset` (`--set platform=NAME`) gives up
parts of the recipe, saying which, until it fits.

The modules, in the order they build on each other:
  assumed    every constant the arithmetic rests on, with its unit and source (measured, assumed, code, vendor);
  platforms  the platforms (PLATFORMS), the one found at run time, the precision each runs;
  weightless the configuration's models on the meta device (parameters without memory) and what each fit reads;
  tracing    per-item bytes and FLOPs traced on the CPU with fake tensors;
  measured   those figures stored (figures.json, `--measure`) or replaced by benchmarks/gpu_check.sh's CSVs;
  fits       every fit of notebooks 02-07; costs: each fit's GPU memory, RAM, disk and hours, and their provenance;
  make       the plan of a run on one platform and what is over its limits;
  presets    adapt and the platform presets; refusals: the problems and their remedies, `prepare`;
  disk       the check before each notebook; cli: the command line.
Sizes are GiB (2^30 bytes) throughout, written "GB".
"""
from .assumed import (AUGMENT_VARIANTS, BYTES_BEST, BYTES_DDP, BYTES_LAST, BYTES_STEP_EXTRA, BYTES_TRAINED,
                      CUDA_CONTEXT_GB, DDP_EFFICIENCY, ENCODE_BATCH, GB, GRADCAM_BATCH, HOST_BASE_GB, IMAGES_PER_CORE,
                      MEMORY_SLACK, MIN_MICRO_BATCH, PREDICT_BATCH, REAL_ROWS, SIZES, SPEED_SLACK, STEP_SECONDS,
                      TABLE, TFIDF_SECONDS_PER_1K, USABLE, VALIDATION_BATCH, WORKER_GB)
from .cli import main, plan_for, summary
from .costs import cost, expected, loader_rate, peak_flops
from .disk import disk_shortfalls, notebook_disk_needs
from .fits import Fit, augmented_copies, data_rows, fits_of, kfold_members
from .make import Plan, cache_apart, make_plan, overflows, usable
from .measured import (FIGURES_FILE, MEASURED, _state_bytes, _stored_figures, as_stored, figures, gpu_measurements,
                       host_base_gb, signature)
from .platforms import PEAK_TFLOPS, PLATFORMS, Platform, PlanError, detect_platform, platform_named, precision_on
from .presets import PRESET_STEPS, TRAINING_KINDS, adapt, changed_settings, preset
from .refusals import prepare, problems, run_folders
from .tracing import HALF, Figures, _batch, _saved, per_item, raw_batch, trace
from .weightless import build, random_backbone, reads, text_architecture, trained_parameters
