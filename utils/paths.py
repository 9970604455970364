"""Every path the project knows, written once."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO_ROOT / "data"
TAXONOMY_CSV = DATA_ROOT / "dacon_tourism_taxonomy.csv"
LABEL_FIXES_CSV = DATA_ROOT / "label_fixes.csv"
BUNDLED_DATA_DIR = DATA_ROOT / "generated"
OUTPUTS = REPO_ROOT / "outputs"
CACHE = OUTPUTS / "cache"


def outputs(output_dir=None) -> Path:
    """The output root: `output_dir` when given (tests point it at a temp dir), else `outputs/`."""
    return Path(output_dir) if output_dir else OUTPUTS


def figures_dir(output_dir=None) -> Path:
    path = outputs(output_dir) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def truth_dir(data_dir) -> Path:
    """Ground truth of a generated dataset; real data has none (the folder is absent)."""
    return Path(data_dir) / "truth"
