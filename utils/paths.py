"""The paths that belong to the repository, written once (a run's own folders are in utils/config.py)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO_ROOT / "data"
TAXONOMY_CSV = DATA_ROOT / "dacon_tourism_taxonomy.csv"
LABEL_FIXES_CSV = DATA_ROOT / "label_fixes.csv"
BUNDLED_DATA_DIR = DATA_ROOT / "generated"
OUTPUTS = REPO_ROOT / "outputs"


def truth_dir(data_dir) -> Path:
    """Ground truth of a generated dataset; real data has none (the folder is absent)."""
    return Path(data_dir) / "truth"
