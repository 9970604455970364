"""Loading and validating a dataset in the real Dacon layout, the taxonomy and its label encoders.

Layout (the contest download's `open/` folder): `train.csv`, `test.csv`, `sample_submission.csv`,
`image/train/*.jpg`, `image/test/*.jpg`; `img_path` is relative to the folder holding the CSVs.
"""
from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import unicodedata
import warnings

import numpy as np
import pandas as pd

from . import paths
from .progress import bar
from .taxonomy import LEVELS, Taxonomy
from .text import clean_overview

TRAIN_COLUMNS = ["id", "img_path", "overview", "cat1", "cat2", "cat3"]
TEST_COLUMNS = ["id", "img_path", "overview"]
SUBMISSION_COLUMNS = ["id", "cat3"]
FIX_COLUMNS = ["id", "field", "old", "new", "reason"]
ENCODINGS = ("utf-8-sig", "cp949")  # utf-8-sig reads plain UTF-8 too; cp949 is a superset of EUC-KR
MAX_LISTED = 30
READ_BLOCK = 1 << 20  # bytes read at a time where a file is streamed


class DataValidationError(ValueError):
    """A dataset problem; the message names file, row id and column of every fault found."""

    def __init__(self, problems: list[str], what: str = "dataset"):
        self.problems = list(problems)
        shown = "\n  - ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in {what}:\n  - {shown}{tail}")


# ---------------------------------------------------------------- taxonomy
TAXONOMY_COLUMNS = ["cat1", "cat2", "cat3"]  # and optionally "count": rows per cat3 in the training data
DATA_TAXONOMY = "taxonomy.csv"  # a data folder's own label tree, used instead of the bundled Dacon tree


def load_taxonomy(path=paths.TAXONOMY_CSV) -> Taxonomy:
    """A label tree from `cat1,cat2,cat3[,count]`, validated: a strict tree (every cat3 under one cat2, every
    cat2 under one cat1), no empty names or names with spaces around them; every fault listed by line.
    A shallower tree repeats names (`의류,의류,티셔츠` for two levels)."""
    path = Path(path)
    table, file_lines = read_csv_lines(path)  # lines as an editor numbers them, blank lines counted
    problems = check_columns(table, TAXONOMY_COLUMNS + ["count"] * ("count" in table.columns), path.name)
    if problems:
        raise DataValidationError(problems, f"taxonomy {path}")
    if table.empty:
        raise DataValidationError([f"{path.name}: no rows (only a header)"], f"taxonomy {path}")
    for line, row in zip(file_lines, table.to_dict("records")):
        for level in TAXONOMY_COLUMNS:
            value = row[level]
            if not value.strip():
                problems.append(f"{path.name} line {line}: column '{level}' is empty")
            elif value != value.strip():
                problems.append(f"{path.name} line {line}: column '{level}' {value!r} has spaces around it")
        if not str(row.get("count", "0")).strip().isdigit():
            problems.append(f"{path.name} line {line}: column 'count' {row['count']!r} is not a whole number >= 0")
    for child, parent in (("cat3", "cat2"), ("cat2", "cat1")):
        lines: dict[str, list[int]] = {}
        for i, name in enumerate(table[child]):
            lines.setdefault(name, []).append(i)
        for name, rows in lines.items():
            parents = table.loc[rows, parent].unique()
            where = ", ".join(str(file_lines[i]) for i in rows)
            if child == "cat3" and len(rows) > 1:
                why = (f", under more than one cat2 {sorted(parents)}: the taxonomy must be a tree" if len(parents) > 1
                       else " (the same row repeated)" if len(table.loc[rows].drop_duplicates()) == 1
                       else " (each cat3 is one row)")
                problems.append(f"{path.name} lines {where}: cat3 {name!r} is listed more than once{why}")
            elif len(parents) > 1:
                problems.append(f"{path.name} lines {where}: {child} {name!r} is under more than one {parent} "
                                f"{sorted(parents)}: the taxonomy must be a tree")
    if problems:
        raise DataValidationError(problems, f"taxonomy {path}")
    if "count" in table.columns:
        table["count"] = table["count"].astype(int)
    return Taxonomy(table)


def taxonomy_file(data_dir) -> Path:
    """Where a data folder's label tree is: its own taxonomy.csv when it has one, else the bundled Dacon tree."""
    own = Path(data_dir) / DATA_TAXONOMY
    return own if own.is_file() else paths.TAXONOMY_CSV


# ---------------------------------------------------------------- reading
def _nfc(frame: pd.DataFrame) -> pd.DataFrame:
    """Every text cell and column name in Unicode NFC: a label typed on a Mac (NFD Hangul) prints like a real
    class but would not match it."""
    frame = frame.rename(columns=lambda c: unicodedata.normalize("NFC", str(c)))
    for column in frame.columns:
        frame[column] = frame[column].map(lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
    return frame


def _looks_utf16(head: bytes) -> bool:
    return head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) > 8 and head.count(b"\x00") > len(head) // 4)


def csv_encoding(path) -> str:
    """The first of ENCODINGS that reads all of `path`, read a block at a time (a catalogue of any size is checked
    in constant memory); a refusal naming the line where each reading fails."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if _looks_utf16(head):
        raise DataValidationError([f"{path.name}: the file looks like UTF-16 (as Excel's 'Unicode text' writes it); "
                                   "save it as 'CSV UTF-8' (or UTF-8 / CP949) and rerun"], str(path))
    errors = []
    for encoding, label in zip(ENCODINGS, ("UTF-8", "CP949/EUC-KR")):
        decoder, lines, final = codecs.getincrementaldecoder(encoding)(), 1, False
        try:
            with open(path, "rb") as fh:
                while block := fh.read(READ_BLOCK):
                    decoder.decode(block)
                    lines += block.count(b"\n")
                final = True
                decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError as exc:  # exc.object: the bytes held back from the last block, then this one
            if final:
                raise DataValidationError([f"{path.name} line {lines}: the file ends inside a character: it is cut off "
                                           "(truncated); copy it again"], str(path)) from None
            line = lines + exc.object[:exc.start].count(b"\n")
            errors.append(f"as {label} (line {line}: {exc.reason})")
    raise DataValidationError([f"{path.name}: cannot be read " + " nor ".join(errors) + ": parts of it are in "
                               "different encodings, or it is damaged; re-save it as 'CSV UTF-8' and rerun"], str(path))


def _decode(path: Path) -> str:
    """The text of a CSV in its encoding (`csv_encoding`), Windows line breaks as "\\n" (also inside values: a
    CRLF file reads as the same file with LF)."""
    return path.read_bytes().decode(csv_encoding(path)).replace("\r\n", "\n")


def _record_lines(text: str) -> list[int] | None:
    """The line on which each record (the header first) starts, as an editor numbers them: the blank lines the
    reader skips and values spanning lines (multi-line overviews) counted; None where the csv module cannot
    scan the text."""
    reader, starts, end = csv.reader(io.StringIO(text)), [], 0
    try:
        for row in reader:
            if len(row) > 1 or (row and row[0].strip()):
                starts.append(end + 1)
            end = reader.line_num
    except csv.Error:
        return None
    return starts


def read_csv_any(path) -> pd.DataFrame:
    """Read a CSV written as UTF-8, UTF-8 with BOM, or CP949/EUC-KR, as NFC strings."""
    return _read_csv(Path(path))[0]


def read_csv_lines(path) -> tuple[pd.DataFrame, list[int]]:
    """`read_csv_any`, and the file line of each row, from the same reading (row i is line i + 2 where no line is
    blank and no value spans lines)."""
    frame, text = _read_csv(Path(path))
    lines = _record_lines(text)
    return frame, lines[1:] if lines and len(lines) == len(frame) + 1 else [i + 2 for i in range(len(frame))]


def _read_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """The frame and the decoded text it was read from."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (expected the real Dacon layout, see README)")
    if not path.is_file():  # a folder, or a FIFO that would block
        raise DataValidationError([f"{path.name}: a folder, not a CSV file" if path.is_dir() else
                                   f"{path.name}: not a regular file"], str(path))
    text = _decode(path)
    if not text.strip():
        raise DataValidationError([f"{path.name}: the file is empty ({path.stat().st_size} bytes, not even a "
                                   "header)"], str(path))
    quoting = 'a value that contains a comma must be quoted ("야영장,오토캠핑장")'
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        lines = _record_lines(text) if "EOF inside string" in str(exc) else None
        problem = (f"{path.name} line {lines[-1]}: a quoted value starts there and is never closed: the file is cut "
                   f"off (truncated) or a closing quote (\") is missing" if lines else f"{path.name}: {exc}; {quoting}")
        raise DataValidationError([problem], str(path)) from exc
    if not isinstance(frame.index, pd.RangeIndex):  # pandas' reading of lines one field longer than the header
        raise DataValidationError([f"{path.name}: every line has more fields than the header "
                                   f"{list(frame.columns)}; {quoting}"], str(path))
    number, line = next((n, line) for n, line in enumerate(text.lstrip("\ufeff").split("\n"), 1) if line.strip())
    check_header(path, next(csv.reader([line]), []), number)
    return _nfc(frame), text


def check_header(path: Path, header: list[str], line: int) -> None:
    """A header naming a column twice is refused by name: pandas would keep the first and rename the others
    'name.1', silently."""
    twice = sorted({name.strip() for name in header if [h.strip() for h in header].count(name.strip()) > 1})
    if twice:
        where = f" line {line}" if line else ""  # a Parquet file has no lines
        raise DataValidationError([f"{path.name}{where}: column {name!r} appears more than once in the "
                                   f"header {header}; keep one" for name in twice], str(path))


@dataclass
class Dataset:
    """One dataset folder, validated. `image_file` columns hold absolute image paths."""

    data_dir: Path
    train: pd.DataFrame
    test: pd.DataFrame
    sample_submission: pd.DataFrame
    taxonomy: Taxonomy
    fixes_applied: int = 0
    given_cat3: list = field(default_factory=list)  # cat3 as train.csv gives it, before reviewed fixes

    @property
    def truth_dir(self) -> Path | None:
        """Ground truth exists only for generated data; notebooks skip truth measurements without it."""
        truth = paths.truth_dir(self.data_dir)
        return truth if truth.is_dir() else None

    @property
    def has_photos(self) -> bool:
        """Whether any training row has a photo: without one, image models have nothing to learn from."""
        return bool(self.train["image_file"].notna().any())

    def photo_counts(self) -> dict[str, tuple[int, int]]:
        """Rows with a photo and rows in all, per split."""
        return {name: (int(frame["image_file"].notna().sum()), len(frame))
                for name, frame in (("train", self.train), ("test", self.test))}

    def labels(self, level: str = "cat3", frame: pd.DataFrame | None = None) -> np.ndarray:
        frame = self.train if frame is None else frame
        return self.taxonomy.encode(level, frame[level])


def load_dataset(data_dir, check_images: bool = True, label_fixes=None, taxonomy: Taxonomy | None = None,
                 progress: bool = True) -> Dataset:
    """Load and validate a folder in the real layout; raise DataValidationError listing every fault."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data folder not found")
    tree = taxonomy_file(data_dir)
    source = ("the taxonomy given" if taxonomy is not None else
              f"the bundled taxonomy {tree}" if tree == paths.TAXONOMY_CSV else str(tree))
    taxonomy = taxonomy or load_taxonomy(tree)
    train, train_lines = read_csv_lines(data_dir / "train.csv")
    test, test_lines = read_csv_lines(data_dir / "test.csv")
    submission = read_csv_any(data_dir / "sample_submission.csv")

    problems = check_columns(train, TRAIN_COLUMNS, "train.csv")
    problems += check_columns(test, TEST_COLUMNS, "test.csv")
    problems += check_columns(submission, SUBMISSION_COLUMNS, "sample_submission.csv")
    if problems:
        raise DataValidationError(problems, str(data_dir))

    fixes_applied, given_cat3 = 0, train["cat3"].tolist()
    if label_fixes is not None and Path(label_fixes).exists():
        train, fixes_applied = apply_label_fixes(train, label_fixes)

    problems += check_not_empty(train, "train.csv") + check_not_empty(test, "test.csv")
    problems += check_ids(train, "train.csv", train_lines) + check_ids(test, "test.csv", test_lines)
    problems += check_shared_ids(train, test)
    problems += check_overviews(train, "train.csv") + check_overviews(test, "test.csv")
    problems += check_misread(train, "train.csv") + check_misread(test, "test.csv")
    problems[:0] = check_label_names(train, taxonomy, "train.csv", source)  # first: never behind the rows listed
    problems += check_labels(train, taxonomy, "train.csv")
    problems += check_submission(submission, test)
    for frame, name in ((train, "train.csv"), (test, "test.csv")):
        frame["image_file"], outside = resolve_image_paths(frame, data_dir, name)
        problems += outside
    if check_images:
        problems += check_images_readable(train, "train.csv", progress)
        problems += check_images_readable(test, "test.csv", progress)
    if problems:
        raise DataValidationError(problems, str(data_dir))
    return Dataset(data_dir, train, test, submission, taxonomy, fixes_applied, given_cat3)


# ---------------------------------------------------------------- checks
def check_columns_present(frame: pd.DataFrame, needed: list[str], name: str) -> list[str]:
    missing = [c for c in needed if c not in frame.columns]
    return [f"{name}: missing column(s) {missing}; it has {list(frame.columns)}"] if missing else []


def resolve_image_paths(frame: pd.DataFrame, base: Path, name: str) -> tuple[list[str], list[str]]:
    """Absolute image files of `img_path` (relative to `base`, the folder holding the CSV), and a problem for
    every path that is absolute or resolves (symlinks followed) outside `base`, or names something that is not
    a regular file: a dataset only ever opens its own files. An empty or whitespace-only `img_path` means the place
    has no photo (None); a path to a missing file stays an error."""
    base = Path(base).resolve()
    files, problems = [], []
    for rid, rel in zip(frame["id"], frame["img_path"]):
        if not str(rel).strip():
            files.append(None)
            continue
        target = (base / rel).resolve()
        where = f"{name} row {rid}: column 'img_path' {rel!r}"
        if Path(rel).is_absolute() or not target.is_relative_to(base):
            problems.append(f"{where} points outside the data folder {base}; paths must be relative to it "
                            f"(like ./image/train/TRAIN_00000.jpg)")
            target = None
        elif target.exists() and not target.is_file():
            problems.append(f"{where} is not a regular file")
            target = None
        files.append(None if target is None else str(target))
    return files, problems


def check_not_empty(frame: pd.DataFrame, name: str) -> list[str]:
    return [f"{name}: no rows (only a header); the file must list the places"] if len(frame) == 0 else []


def check_shared_ids(train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    shared = sorted(set(train["id"].str.strip()) & set(test["id"].str.strip()))
    return [f"test.csv row {rid}: column 'id' also appears in train.csv (an id names one place)" for rid in shared]


def check_columns(frame: pd.DataFrame, expected: list[str], name: str) -> list[str]:
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    problems = []
    if missing:
        problems.append(f"{name}: missing column(s) {missing}; expected exactly {expected}")
    if extra:
        problems.append(f"{name}: unexpected column(s) {extra}; expected exactly {expected}")
    return problems


def check_ids(frame: pd.DataFrame, name: str, lines: list[int]) -> list[str]:
    """`lines`: each row's line in the file (read_csv_lines)."""
    problems = []
    for row, value in enumerate(frame["id"]):
        if not value.strip():
            problems.append(f"{name} line {lines[row]}: column 'id' is empty")
        elif value != value.strip():
            problems.append(f"{name} line {lines[row]}: column 'id' {value!r} has spaces around it")
    stripped = frame["id"].str.strip()
    for value in sorted(set(stripped[stripped.duplicated(keep=False)])):
        lines_of = [str(lines[i]) for i in np.flatnonzero(stripped.to_numpy() == value)]
        problems.append(f"{name} row {value}: column 'id' is duplicated (lines {', '.join(lines_of)})")
    return problems


def blank_text(text) -> bool:
    """Whether a text has nothing to read once cleaned: only markup, whitespace or invisible characters (a
    zero-width space, a BOM), which a model would read as an empty text."""
    return not any(c.isprintable() and not c.isspace() for c in clean_overview(text))


def check_overviews(frame: pd.DataFrame, name: str) -> list[str]:
    return [f"{name} row {rid}: column 'overview' is empty or missing" if not str(text).strip() else
            f"{name} row {rid}: column 'overview' holds only markup ({str(text)[:40]!r}), no text"
            if not clean_overview(text) else
            f"{name} row {rid}: column 'overview' holds only invisible characters ({clean_overview(text)[:40]!r}), "
            f"no text" for rid, text in zip(frame["id"], frame["overview"]) if blank_text(text)]


def misread_korean(text: str) -> str | None:
    """Korean that was once read in the wrong encoding and saved so (UTF-8 or CP949 bytes shown as Latin-1 or
    Windows-1252: '한식' as 'íœì‹'), as it should read; None for any other text (accented Latin stays text)."""
    for shown in ("latin-1", "cp1252"):
        try:
            raw = str(text).encode(shown)
        except UnicodeEncodeError:
            continue
        for real in ("utf-8", "cp949"):
            try:
                fixed = raw.decode(real)
            except UnicodeDecodeError:
                continue
            hangul = sum("가" <= c <= "힣" for c in fixed)
            foreign = sum(not c.isascii() for c in fixed)
            if fixed != text and hangul >= 2 and hangul * 2 > foreign and not any("가" <= c <= "힣" for c in text):
                return fixed  # mostly Korean once repaired, none before: '25°C' (one syllable by chance) stays text
    return None


def check_misread(frame: pd.DataFrame, name: str, column: str = "overview") -> list[str]:
    """Mojibake in a text column, which no label gives away in test.csv: one problem naming its rows."""
    rows = [(rid, text, fixed) for rid, text in zip(frame["id"], frame[column]) if (fixed := misread_korean(text))]
    if not rows:
        return []
    ids = ", ".join(str(rid) for rid, _, _ in rows[:3]) + (", ..." if len(rows) > 3 else "")
    rid, text, fixed = rows[0]
    return [f"{name}: column '{column}' of {len(rows)} row(s) ({ids}) is Korean read in the wrong encoding (row "
            f"{rid}: {text[:20]!r} is {fixed[:20]!r}); re-save the file as UTF-8 and rerun"]


def check_label_names(frame: pd.DataFrame, taxonomy: Taxonomy, name: str, source: str) -> list[str]:
    """One problem per level naming every label the taxonomy lacks, however many rows carry them."""
    problems = []
    for level in LEVELS:
        known = set(taxonomy.classes(level))
        missing = frame.loc[~frame[level].isin(known), level]
        if len(missing):
            names = sorted(set(missing))
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            problems.append(f"{name}: {len(missing)} row(s) have a {level} that {source} lacks: "
                            f"{names[:MAX_LISTED]}{more}; add them to it or correct the rows")
    return problems


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
    unknown = [v for v in frame["cat3"] if v not in known["cat3"]]
    misread = [v for v in unknown if "\ufffd" in v or misread_korean(v)]  # not a label missing from a tree
    if len(frame) and len(unknown) > len(frame) / 2 and misread:
        problems.insert(0, f"{name}: {len(unknown)} of {len(frame)} cat3 labels are not in the taxonomy: the file's "
                           f"encoding is the likely cause (Korean read in the wrong encoding, e.g. Latin-1 mojibake "
                           f"such as {misread[0]!r}); re-save it as UTF-8 and rerun")
    return problems


def check_submission(submission: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    if list(submission["id"]) != list(test["id"]):
        return ["sample_submission.csv: column 'id' does not list the test.csv ids in test.csv order"]
    return []


def check_images_readable(frame: pd.DataFrame, name: str, progress: bool = True) -> list[str]:
    """Decode every image (at reduced size, for speed); list every missing or undecodable one."""
    from .images import MAX_IMAGE_SIDE, image_size, probe_image

    problems, large = [], []
    rows = zip(frame["id"], frame["img_path"], frame["image_file"])
    for rid, rel, path in bar(rows, total=len(frame), desc=f"checking {name} images", disable=not progress):
        if not isinstance(path, str):  # already reported: outside the folder or not a regular file, never opened
            continue
        error = probe_image(path)
        if error:
            problems.append(f"{name} row {rid}: column 'img_path' {rel!r}: {error}")
            continue
        size = image_size(path)
        if max(size) > MAX_IMAGE_SIDE:
            large.append((rid, size))
    if large:
        rid, (w, h) = max(large, key=lambda item: item[1][0] * item[1][1])
        warnings.warn(f"{name}: {len(large)} image(s) larger than {MAX_IMAGE_SIDE} px on a side (largest: row {rid}, "
                      f"{w}x{h}); they are downscaled while decoding, but each still takes time to read", stacklevel=2)
    return problems


# ---------------------------------------------------------------- label fixes
def read_label_fixes(path) -> tuple[pd.DataFrame, list[int]]:
    """The reviewed corrections and the file line of each (blank lines and notes that span lines counted)."""
    fixes, lines = read_csv_lines(path)
    problems = check_columns(fixes, FIX_COLUMNS, Path(path).name)
    if problems:
        raise DataValidationError(problems, str(path))
    return fixes, lines


def apply_label_fixes(train: pd.DataFrame, path) -> tuple[pd.DataFrame, int]:
    """Apply reviewed corrections; a fix whose `old` does not match the data is an error, never an overwrite."""
    fixes, lines = read_label_fixes(path)
    train = train.copy()
    position = {rid: i for i, rid in enumerate(train["id"])}
    problems = []
    for line, fix in zip(lines, fixes.itertuples(index=False)):
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
