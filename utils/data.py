"""Loading and validating a dataset in the real Dacon layout, the taxonomy and its label encoders.

Layout (the contest download's `open/` folder): `train.csv`, `test.csv`, `sample_submission.csv`,
`image/train/*.jpg`, `image/test/*.jpg`; `img_path` is relative to the folder holding the CSVs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from .progress import bar

from . import paths

TRAIN_COLUMNS = ["id", "img_path", "overview", "cat1", "cat2", "cat3"]
TEST_COLUMNS = ["id", "img_path", "overview"]
SUBMISSION_COLUMNS = ["id", "cat3"]
LEVELS = ("cat1", "cat2", "cat3")
FIX_COLUMNS = ["id", "field", "old", "new", "reason"]
ENCODINGS = ("utf-8-sig", "cp949")  # utf-8-sig reads plain UTF-8 too; cp949 is a superset of EUC-KR
MAX_LISTED = 30


class DataValidationError(ValueError):
    """A dataset problem; the message names file, row id and column of every fault found."""

    def __init__(self, problems: list[str], what: str = "dataset"):
        self.problems = list(problems)
        shown = "\n  - ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in {what}:\n  - {shown}{tail}")


# ---------------------------------------------------------------- taxonomy
@dataclass(frozen=True)
class Taxonomy:
    """The label tree. Encoders are sorted names, fitted on the tree, so all 128 cat3 always exist."""

    table: pd.DataFrame
    cat1: list[str] = field(init=False)
    cat2: list[str] = field(init=False)
    cat3: list[str] = field(init=False)

    def __post_init__(self):
        for level in LEVELS:
            object.__setattr__(self, level, sorted(self.table[level].unique()))

    @property
    def sizes(self) -> dict[str, int]:
        return {level: len(getattr(self, level)) for level in LEVELS}

    def classes(self, level: str) -> list[str]:
        return getattr(self, level)

    def encode(self, level: str, values) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes(level))}
        return np.array([index[v] for v in values], dtype=np.int64)

    def decode(self, level: str, codes) -> list[str]:
        names = self.classes(level)
        return [names[int(c)] for c in codes]

    def parent_of(self, child_level: str) -> np.ndarray:
        """For each class of `child_level` (cat2 or cat3), the index of its parent one level up."""
        parent_level = {"cat2": "cat1", "cat3": "cat2"}[child_level]
        pairs = self.table.drop_duplicates(child_level).set_index(child_level)[parent_level]
        return self.encode(parent_level, [pairs[c] for c in self.classes(child_level)])

    def path(self, cat3: str) -> tuple[str, str, str]:
        return (*self._paths[cat3], cat3)

    def is_path(self, cat1: str, cat2: str, cat3: str) -> bool:
        return cat3 in self._paths and self._paths[cat3] == (cat1, cat2)

    @cached_property
    def _paths(self) -> dict[str, tuple[str, str]]:
        """cat3 -> (cat1, cat2), built once: validation asks for every row."""
        return {r.cat3: (r.cat1, r.cat2) for r in self.table.itertuples()}


def load_taxonomy(path=paths.TAXONOMY_CSV) -> Taxonomy:
    table = pd.read_csv(path, encoding="utf-8", dtype={"cat1": str, "cat2": str, "cat3": str})
    if table["cat3"].duplicated().any():
        raise DataValidationError([f"{path}: cat3 names must be unique"], "taxonomy")
    return Taxonomy(table)


# ---------------------------------------------------------------- reading
def read_csv_any(path) -> pd.DataFrame:
    """Read a CSV written as UTF-8, UTF-8 with BOM, or CP949/EUC-KR, as strings."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (expected the real Dacon layout, see README)")
    errors = []
    for encoding in ENCODINGS:
        try:
            return pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False)
        except UnicodeDecodeError as exc:
            errors.append(f"{encoding}: {exc.reason} at byte {exc.start}")
    raise DataValidationError([f"{path.name}: cannot decode as " + "; ".join(errors)], str(path))


@dataclass
class Dataset:
    """One dataset folder, validated. `image_file` columns hold absolute image paths."""

    data_dir: Path
    train: pd.DataFrame
    test: pd.DataFrame
    sample_submission: pd.DataFrame
    taxonomy: Taxonomy
    fixes_applied: int = 0

    @property
    def truth_dir(self) -> Path | None:
        """Ground truth exists only for generated data; notebooks skip truth measurements without it."""
        truth = paths.truth_dir(self.data_dir)
        return truth if truth.is_dir() else None

    def labels(self, level: str = "cat3", frame: pd.DataFrame | None = None) -> np.ndarray:
        frame = self.train if frame is None else frame
        return self.taxonomy.encode(level, frame[level])


def load_dataset(data_dir, check_images: bool = True, label_fixes=None, taxonomy: Taxonomy | None = None,
                 progress: bool = True) -> Dataset:
    """Load and validate a folder in the real layout; raise DataValidationError listing every fault."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data folder not found")
    taxonomy = taxonomy or load_taxonomy()
    train = read_csv_any(data_dir / "train.csv")
    test = read_csv_any(data_dir / "test.csv")
    submission = read_csv_any(data_dir / "sample_submission.csv")

    problems = check_columns(train, TRAIN_COLUMNS, "train.csv")
    problems += check_columns(test, TEST_COLUMNS, "test.csv")
    problems += check_columns(submission, SUBMISSION_COLUMNS, "sample_submission.csv")
    if problems:
        raise DataValidationError(problems, str(data_dir))

    fixes_applied = 0
    if label_fixes is not None and Path(label_fixes).exists():
        train, fixes_applied = apply_label_fixes(train, label_fixes)

    problems += check_ids(train, "train.csv") + check_ids(test, "test.csv")
    problems += check_overviews(train, "train.csv") + check_overviews(test, "test.csv")
    problems += check_labels(train, taxonomy, "train.csv")
    problems += check_submission(submission, test)
    for frame in (train, test):
        frame["image_file"] = [str((data_dir / p).resolve()) for p in frame["img_path"]]
    if check_images:
        problems += check_images_readable(train, "train.csv", progress)
        problems += check_images_readable(test, "test.csv", progress)
    if problems:
        raise DataValidationError(problems, str(data_dir))
    return Dataset(data_dir, train, test, submission, taxonomy, fixes_applied)


# ---------------------------------------------------------------- checks
def check_columns(frame: pd.DataFrame, expected: list[str], name: str) -> list[str]:
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    problems = []
    if missing:
        problems.append(f"{name}: missing column(s) {missing}; expected exactly {expected}")
    if extra:
        problems.append(f"{name}: unexpected column(s) {extra}; expected exactly {expected}")
    return problems


def check_ids(frame: pd.DataFrame, name: str) -> list[str]:
    problems = []
    for row, value in enumerate(frame["id"]):
        if not value.strip():
            problems.append(f"{name} line {row + 2}: column 'id' is empty")
    duplicated = frame.loc[frame["id"].duplicated(keep=False), "id"]
    for value in sorted(set(duplicated)):
        lines = [str(i + 2) for i in np.flatnonzero(frame["id"].to_numpy() == value)]
        problems.append(f"{name} row {value}: column 'id' is duplicated (lines {', '.join(lines)})")
    return problems


def check_overviews(frame: pd.DataFrame, name: str) -> list[str]:
    return [f"{name} row {rid}: column 'overview' is empty or missing"
            for rid, text in zip(frame["id"], frame["overview"]) if not str(text).strip()]


def check_labels(frame: pd.DataFrame, taxonomy: Taxonomy, name: str) -> list[str]:
    """Every label must be in the taxonomy, and cat1/cat2 must be the parents of cat3."""
    problems = []
    known = {level: set(taxonomy.classes(level)) for level in LEVELS}
    for row in frame.itertuples(index=False):
        bad = False
        for level in LEVELS:
            value = getattr(row, level)
            if value not in known[level]:
                bad = True
                problems.append(f"{name} row {row.id}: column '{level}' value {value!r} is not one of the "
                                f"{len(known[level])} {level} of the taxonomy")
        if not bad and not taxonomy.is_path(row.cat1, row.cat2, row.cat3):
            cat1, cat2, _ = taxonomy.path(row.cat3)
            problems.append(f"{name} row {row.id}: columns 'cat1','cat2' are {row.cat1!r},{row.cat2!r} but "
                            f"cat3 {row.cat3!r} belongs under {cat1!r},{cat2!r}")
    return problems


def check_submission(submission: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    if list(submission["id"]) != list(test["id"]):
        return ["sample_submission.csv: column 'id' does not list the test.csv ids in test.csv order"]
    return []


def check_images_readable(frame: pd.DataFrame, name: str, progress: bool = True) -> list[str]:
    """Decode every image (at reduced size, for speed); list every missing or undecodable one."""
    from .images import probe_image

    problems = []
    rows = zip(frame["id"], frame["img_path"], frame["image_file"])
    for rid, rel, path in bar(rows, total=len(frame), desc=f"checking {name} images", disable=not progress):
        error = probe_image(path)
        if error:
            problems.append(f"{name} row {rid}: column 'img_path' {rel!r}: {error}")
    return problems


# ---------------------------------------------------------------- label fixes
def read_label_fixes(path) -> pd.DataFrame:
    fixes = read_csv_any(path)
    problems = check_columns(fixes, FIX_COLUMNS, Path(path).name)
    if problems:
        raise DataValidationError(problems, str(path))
    return fixes


def apply_label_fixes(train: pd.DataFrame, path) -> tuple[pd.DataFrame, int]:
    """Apply reviewed corrections; a fix whose `old` does not match the data is an error, never an overwrite."""
    fixes = read_label_fixes(path)
    train = train.copy()
    position = {rid: i for i, rid in enumerate(train["id"])}
    problems = []
    for line, fix in enumerate(fixes.itertuples(index=False), start=2):
        where = f"{Path(path).name} line {line} (row {fix.id}, field {fix.field!r})"
        if fix.field not in LEVELS:
            problems.append(f"{where}: field must be one of {list(LEVELS)}")
        elif fix.id not in position:
            problems.append(f"{where}: id not found in train.csv")
        else:
            current = train.at[position[fix.id], fix.field]
            if current != fix.old:
                problems.append(f"{where}: expected old value {fix.old!r} but train.csv has {current!r}")
            else:
                train.at[position[fix.id], fix.field] = fix.new
    if problems:
        raise DataValidationError(problems, str(path))
    return train, len(fixes)


def class_counts(frame: pd.DataFrame, taxonomy: Taxonomy, level: str = "cat3") -> pd.Series:
    """Rows per class, listing every class of the taxonomy (0 for those the data lacks)."""
    return frame[level].value_counts().reindex(taxonomy.classes(level), fill_value=0)
