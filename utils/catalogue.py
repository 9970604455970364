"""Tagging a whole catalogue: hashtags for every row of a CSV or Parquet file of places, in bounded memory.

    python -m utils.predict --run RUN --csv catalogue.csv --out tags.csv          # or .parquet, either side
    python -m utils.predict --run RUN --csv catalogue.csv --out tags.csv --shard 2/4   # every 4th chunk from the 2nd
    python -m utils.predict --run RUN --csv catalogue.csv --out tags.csv --merge       # the shards' parts, joined

The rows are read a chunk at a time; each finished chunk is written atomically as its own part in `<out>.parts/`,
so that a rerun after a crash or a kill continues after the last finished chunk, and the parts are joined in input
order into `<out>` at the end: the same bytes however often the work stopped, and however it was sharded. A row that
cannot be tagged (no text and no usable photo, no id, an id seen before) goes to `<out stem>.refused.csv` with its
reason; a row with a bad photo is tagged from its text and says so in the `note` column; none stops the catalogue.
"""
from __future__ import annotations

import csv
import hashlib
from contextlib import contextmanager
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from .data import (DataValidationError, READ_BLOCK, _nfc, blank_text, check_columns_present, check_header,
                   csv_encoding, misread_korean)
from .images import no_photo, probe_image
from .io import atomic_path, read_json, write_csv, write_json
from .progress import bar

CHUNK_ROWS = 1024  # rows per part: a kill loses at most this much work; memory holds one chunk's inputs
INPUT_COLUMNS = ["id", "img_path", "overview"]
COLUMNS = ["id", "cat1", "cat2", "cat3", "hashtags", "keywords", "path_probability_cat3", "top_cat3",
           "top_probability", "note"]
REFUSED_COLUMNS = ["row", "id", "reason"]
PARQUET = (".parquet", ".pq")


class CatalogueError(ValueError):
    """Why a catalogue job cannot start or finish, and what to do."""


def is_parquet(path) -> bool:
    return Path(path).suffix.lower() in PARQUET


# ---------------------------------------------------------------- reading
def catalogue_chunks(path, chunk_rows: int = CHUNK_ROWS, encoding: str | None = None) -> Iterator[pd.DataFrame]:
    """The catalogue's rows, `chunk_rows` at a time, as NFC strings of id, img_path and overview (Windows line
    breaks inside values as "\\n", as the pipeline reads its data). A file-level fault (missing column, encoding,
    a broken quote) is a DataValidationError naming the file. `encoding`: what `check_readable` found (given, the
    file is not checked and decoded through once more)."""
    path = Path(path)
    if encoding is None:
        encoding = check_readable(path)
    if is_parquet(path):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=INPUT_COLUMNS):
            yield _nfc(pd.DataFrame({c: [v.replace("\r\n", "\n") for v in _strings(batch.column(
                batch.schema.get_field_index(c)))] for c in INPUT_COLUMNS}))
        return
    reader = pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False, chunksize=chunk_rows,
                         usecols=lambda name: name.strip() in INPUT_COLUMNS)
    with _named_parser_errors(path):
        for frame in reader:
            frame.columns = [c.strip() for c in frame.columns]
            yield _nfc(frame[INPUT_COLUMNS].apply(lambda col: col.str.replace("\r\n", "\n", regex=False)))


def _strings(column) -> list[str]:
    """A Parquet column as the CSV reader gives it: text, ids of any type as written ("7", not "7.0"), nulls
    empty, bytes decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return [v.decode("utf-8", "replace") if v is not None else "" for v in column.to_pylist()]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return ["" if v is None else v for v in column.to_pylist()]


@contextmanager
def _named_parser_errors(path: Path):
    """pandas' complaints about the file's shape as the pipeline's refusals; its warning that every line has more
    fields than the header (data it would drop) too."""
    quoting = "a value that contains a comma must be quoted, and every quote closed"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield
    except pd.errors.ParserError as exc:
        raise DataValidationError([f"{path.name}: {exc}; {quoting}"], str(path)) from None
    except pd.errors.ParserWarning:
        raise DataValidationError([f"{path.name}: lines have more fields than the header; {quoting}"],
                                  str(path)) from None


def check_readable(path: Path) -> str:
    """The file-level faults, before any model loads: not a file, empty, not CSV or Parquet as named, a column
    missing or named twice, an encoding that cannot be read. Returns a CSV's encoding ("" for Parquet)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    if not path.is_file():
        raise DataValidationError([f"{path.name}: a folder, not a catalogue file" if path.is_dir() else
                                   f"{path.name}: not a regular file"], str(path))
    if path.stat().st_size == 0:
        raise DataValidationError([f"{path.name}: the file is empty (0 bytes, not even a header)"], str(path))
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            columns = pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataValidationError([f"{path.name}: not a readable Parquet file ({exc})"], str(path)) from None
        check_header(path, columns, None)
        encoding = ""
    else:
        encoding = csv_encoding(path)
        with open(path, encoding=encoding, newline="") as fh:
            line, header = 0, []
            for line, header in enumerate(csv.reader(fh), 1):
                if any(h.strip() for h in header):
                    break
        check_header(path, header, line)
        columns = header
    problems = check_columns_present(pd.DataFrame(columns=[c.strip() for c in columns]), INPUT_COLUMNS, path.name)
    if problems:
        raise DataValidationError(problems, str(path))
    return encoding


def count_rows(path, encoding: str) -> int:
    """Rows of the catalogue in its `encoding`, read once in chunks (a Parquet file knows its own)."""
    path = Path(path)
    if is_parquet(path):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with _named_parser_errors(path):  # every field read: a line with one too many is refused, not cut short
        return sum(len(chunk) for chunk in pd.read_csv(path, encoding=encoding, dtype=str, index_col=False,
                                                       keep_default_na=False, chunksize=64 * CHUNK_ROWS))


def file_digest(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- screening rows
@dataclass
class Screened:
    """One chunk's rows as the predictor takes them, and what was wrong with each."""

    rows: list[int] = field(default_factory=list)  # 1-based position in the catalogue
    ids: list[str] = field(default_factory=list)
    photos: list = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def count(self, key: str, row: int, rid: str, detail: str = "") -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self.examples.setdefault(key, f"row {row:,} (id {rid!r})" + (f": {detail}" if detail else ""))


def registered(rid: str, row: int, seen: dict) -> str | None:
    """Why a row's id cannot name it (none, or one an earlier row has), else None, the id now taken; `seen`
    maps each id to its first row."""
    if not rid:
        return "no id"
    if rid in seen:
        return f"duplicate id: first at row {seen[rid]:,}"
    seen[rid] = row
    return None


def screen(frame: pd.DataFrame, first_row: int, base: Path, seen: dict, ids_only: bool = False) -> Screened:
    """A chunk's rows checked one by one: ids against every earlier row (`seen`, updated), photos resolved inside
    the catalogue's folder and probed, texts read for something to read (Korean once read in the wrong encoding
    repaired). A row is tagged from what it has, or refused with its reason. `ids_only`: a chunk tagged before
    (a rerun) or by another shard, whose ids are all that later chunks need."""
    out, probed = Screened(), {}  # a photo that repeats within the chunk is probed once
    for offset, (rid, rel, text) in enumerate(zip(frame["id"], frame["img_path"], frame["overview"])):
        row, rid = first_row + offset, str(rid).strip()
        refusal = registered(rid, row, seen)
        if ids_only:
            continue
        if refusal:
            out.refused.append({"row": row, "id": rid, "reason": refusal})
            out.count(f"refused: {refusal.split(':')[0]}", row, rid, refusal)
            continue
        notes, photo = [], None
        if no_photo(rel):
            out.count("no photo", row, rid)
        else:
            target, problem = _photo(rel, base, probed)
            if problem:
                notes.append(f"photo {rel}: {problem}")
                out.count("photo not usable", row, rid, f"{rel}: {problem}")
            else:
                photo = str(target)
        repaired = misread_korean(text)
        if repaired:
            notes.append("overview was Korean read in the wrong encoding; repaired")
            out.count("overview in the wrong encoding (repaired)", row, rid, f"{text[:20]!r} is {repaired[:20]!r}")
            text = repaired
        if blank_text(text):
            if photo is None:
                reason = "no text and no photo" if not notes else f"no text, and {notes[0]}"
                out.refused.append({"row": row, "id": rid, "reason": reason})
                out.count("refused: no text and no usable photo", row, rid, reason)
                continue
            notes.append("no text: tagged from the photo alone")
            out.count("no text", row, rid)
            text = ""
        out.rows.append(row)
        out.ids.append(rid)
        out.photos.append(photo)
        out.texts.append(str(text))
        out.notes.append("; ".join(notes))
    return out


def _photo(rel: str, base: Path, probed: dict) -> tuple[Path | None, str | None]:
    """The photo's file inside the catalogue's folder and None, or why it cannot be used; a reason names the path
    as the catalogue gives it, so that the output does not depend on where the catalogue sits."""
    try:
        target = (base / rel).resolve()
        if Path(rel).is_absolute() or not target.is_relative_to(base):
            return None, "outside the catalogue's folder"
        if target not in probed:
            probed[target] = probe_image(target)
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a name too long, a loop of symlinks
        return None, f"cannot be opened ({type(exc).__name__}: {exc})"
    problem = probed[target]
    return target, problem.replace(str(target), rel) if problem else None


def tag_rows(predictor, chunk: Screened, top_k: int) -> pd.DataFrame:
    """The output rows of a chunk (COLUMNS), in its order."""
    results = predictor.predict(chunk.photos, chunk.texts, top_k, check=False, progress=False) if chunk.ids else []
    return pd.DataFrame([{"id": rid, "cat1": r["cat1"], "cat2": r["cat2"], "cat3": r["cat3"],
                          "hashtags": r["hashtags"], "keywords": " ".join(r["keywords"]),
                          "path_probability_cat3": round(r["path_probability"]["cat3"], 4),
                          "top_cat3": r["top_k"][0][0], "top_probability": round(r["top_k"][0][1], 4), "note": note}
                         for rid, r, note in zip(chunk.ids, results, chunk.notes)], columns=COLUMNS)


# ---------------------------------------------------------------- parts
class Parts:
    """`<out>.parts/`: the job's description (`job.json`), and per finished chunk its rows, its refusals and its
    summary; the summary is written last, so a chunk counts as finished only once all three are there."""

    def __init__(self, out):
        self.out = Path(out)
        self.dir = Path(str(out) + ".parts")
        self.parquet = is_parquet(out)

    def rows(self, i: int) -> Path:
        return self.dir / f"{i:06d}{'.parquet' if self.parquet else '.csv'}"

    def refused(self, i: int) -> Path:
        return self.dir / f"{i:06d}.refused.csv"

    def summary(self, i: int) -> Path:
        return self.dir / f"{i:06d}.json"

    def done(self, i: int) -> bool:
        return self.summary(i).is_file()

    def start(self, job: dict) -> None:
        """The parts folder of this job: made, or found holding this job's parts; another job's is refused."""
        found = read_json(self.dir / "job.json")
        if found is None:
            write_json(job, self.dir / "job.json")
            return
        differ = [k for k in sorted((set(job) | set(found)) - {"rows"}) if found.get(k) != job.get(k)]
        if differ:
            raise CatalogueError(f"{self.dir} holds the parts of another job (its {', '.join(differ)} differ): "
                                 f"delete the folder to start again, or choose another --out")

    def write(self, i: int, tagged: pd.DataFrame, chunk: Screened, seconds: float, tagged_by: str = "") -> dict:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            with atomic_path(self.rows(i)) as tmp:
                pq.write_table(pa.Table.from_pandas(tagged, schema=parquet_schema(), preserve_index=False), tmp)
        else:
            with atomic_path(self.rows(i)) as tmp:
                tagged.to_csv(tmp, index=False, header=False, encoding="utf-8", lineterminator="\n")
        write_csv(pd.DataFrame(chunk.refused, columns=REFUSED_COLUMNS), self.refused(i), header=False,
                  lineterminator="\n")
        summary = {"rows": len(chunk.ids) + len(chunk.refused), "tagged": len(chunk.ids),
                   "refused": len(chunk.refused), "counts": chunk.counts, "examples": chunk.examples,
                   "seconds": round(seconds, 3), "bytes": self.rows(i).stat().st_size,
                   "refused_bytes": self.refused(i).stat().st_size, "tagged_by": tagged_by}
        write_json(summary, self.summary(i))
        return summary


def parquet_schema():
    import pyarrow as pa

    return pa.schema([(c, pa.float64() if c in ("path_probability_cat3", "top_probability") else pa.string())
                      for c in COLUMNS])


def refused_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name.rsplit(".", 1)[0] + ".refused.csv")


def summary_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name.rsplit(".", 1)[0] + ".summary.json")


def merge(parts: Parts, n_chunks: int, job: dict) -> dict:
    """The parts joined in input order into `<out>` and the refusals into `<out stem>.refused.csv` (each written
    atomically, a part at a time), the summaries added up; then the parts folder goes."""
    missing = [i for i in range(n_chunks) if not parts.done(i)]
    if missing:
        owner = "chunk i is tagged by shard (i mod N) + 1 of N"
        raise CatalogueError(f"{len(missing)} of {n_chunks} chunks are not tagged yet (chunks {_listed(missing)}, "
                             f"counted from 0; {owner}): run the shards that tag them to the end, into {parts.dir}, "
                             f"then --merge again")
    summaries = [read_json(parts.summary(i)) for i in range(n_chunks)]
    damaged = [f"{parts.rows(i).name} or {parts.refused(i).name}" for i, part in enumerate(summaries)
               if (part["bytes"], part["refused_bytes"]) != (_size(parts.rows(i)), _size(parts.refused(i)))]
    if damaged:
        raise CatalogueError(f"{len(damaged)} part(s) in {parts.dir} are not the size their chunk wrote ("
                             f"{_listed(damaged, 3)}): a copy cut short? Copy them again, or delete each damaged "
                             f"chunk's files (NNNNNN.*) and tag again; nothing was merged")
    if parts.parquet:
        import pyarrow.parquet as pq

        with atomic_path(parts.out) as tmp:
            with pq.ParquetWriter(tmp, parquet_schema()) as writer:
                for i in range(n_chunks):
                    writer.write_table(pq.read_table(parts.rows(i), schema=parquet_schema()))
    else:
        _join(parts.out, ",".join(COLUMNS), [parts.rows(i) for i in range(n_chunks)])
    _join(refused_path(parts.out), ",".join(REFUSED_COLUMNS), [parts.refused(i) for i in range(n_chunks)])
    devices = sorted({part.get("tagged_by", "") for part in summaries} - {""})
    summary = {"job": job, "rows": 0, "tagged": 0, "refused": 0, "counts": {}, "examples": {}, "seconds": 0.0,
               "tagged_by": devices}
    for part in summaries:
        for key in ("rows", "tagged", "refused", "seconds"):
            summary[key] += part[key]
        for key, n in part["counts"].items():
            summary["counts"][key] = summary["counts"].get(key, 0) + n
            summary["examples"].setdefault(key, part["examples"][key])
    summary["seconds"] = round(summary["seconds"], 1)
    write_json(summary, summary_path(parts.out))
    shutil.rmtree(parts.dir)
    return summary


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else -1


def _join(path: Path, header: str, parts: list[Path]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.encode() + b"\n")
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, fh)


def _listed(numbers: list[int], shown: int = 8) -> str:
    return ", ".join(map(str, numbers[:shown])) + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


# ---------------------------------------------------------------- the job
def check_output(source: Path, out: Path) -> None:
    """The output and the files beside it neither are the catalogue nor a folder, and can be written."""
    written = [out, refused_path(out), summary_path(out), Parts(out).dir]
    if any(p.exists() and p.resolve() == source.resolve() for p in written):
        raise CatalogueError(f"--out {out} would overwrite the catalogue {source} (or name a file beside it after "
                             f"it): choose another output name")
    if out.is_dir():
        raise CatalogueError(f"--out {out} is a folder: give a file name ending in .csv or .parquet")
    if not out.parent.is_dir():
        raise CatalogueError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise CatalogueError(f"--out {out}: the folder {out.parent} cannot be written to; choose another")


def run_fingerprint(card) -> str:
    """What the run's predictor answers with: predictor.json and the size and time of every file it names (a
    retrained unit in the same folder is another predictor), hashed."""
    card = Path(card)
    digest = hashlib.sha256(card.read_bytes())
    described = json.loads(card.read_text(encoding="utf-8") or "{}")
    files = [u for m in described.get("members", []) for u in m.get("units", [])] + \
        ([described["keywords"]] if described.get("keywords") else [])
    for name in files:
        stat = (card.parent / name).stat() if (card.parent / name).exists() else None
        digest.update(f"{name} {stat.st_size if stat else -1} {stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()


def parse_shard(text: str | None) -> tuple[int, int]:
    """`K/N` (1 ≤ K ≤ N) as (K, N); None as the whole catalogue (1, 1)."""
    if not text:
        return 1, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise CatalogueError(f"--shard {text!r}: give K/N with 1 <= K <= N, e.g. --shard 1/4 for the first of four")
    return k, n


def tag_catalogue(load_predictor: Callable, source, out, card, shard: tuple[int, int] = (1, 1),
                  merge_only: bool = False, chunk_rows: int = CHUNK_ROWS, top_k: int = 3, log=print,
                  bf16_encoders: bool = False) -> dict | None:
    """Tag `source` into `out` (see the module's docstring); `load_predictor()` is called only when there is a
    chunk to tag, after every file-level check. `card`: the run's predictor.json, whose content is part of the
    job's identity with the catalogue's, the chunk size, top-k and `bf16_encoders` (the predictor's; not the
    sharding: every chunk is tagged the same whichever process tags it). Returns the summary once
    `out` is whole; None when a shard finished its part and others remain."""
    source, out = Path(source), Path(out)
    encoding = check_readable(source)
    check_output(source, out)
    k, n = shard
    job = {"catalogue": file_digest(source), "predictor": run_fingerprint(card), "chunk_rows": chunk_rows,
           "top_k": top_k, "out": out.name, **({"encoders": "bf16"} if bf16_encoders else {})}
    done = read_json(summary_path(out))
    if out.is_file() and done is not None and done.get("job") == job:
        log(f"{out} is already tagged from {source.name} with this run; delete it to tag again")
        return done
    parts = Parts(out)
    parts.start(job)
    rows = read_json(parts.dir / "job.json").get("rows")
    if rows is None:
        rows = count_rows(source, encoding)
        if rows == 0:
            shutil.rmtree(parts.dir)
            raise CatalogueError(f"{source.name}: no places to tag (a header and no rows)")
        write_json({**job, "rows": rows}, parts.dir / "job.json")
    n_chunks = max(1, math.ceil(rows / chunk_rows))
    mine = [i for i in range(n_chunks) if i % n == k - 1]
    if not merge_only:
        todo = {i for i in mine if not parts.done(i)}
        if todo:
            _tag_chunks(load_predictor(), source, encoding, parts, todo, mine, rows, chunk_rows, top_k, (k, n))
        if n > 1:
            log(f"shard {k}/{n}: its {len(mine)} chunks are tagged in {parts.dir}; when every shard is done, join "
                f"them with the same command and --merge instead of --shard")
            return None
    summary = merge(parts, n_chunks, job)
    log(describe(summary, out))
    return summary


def _tag_chunks(predictor, source: Path, encoding: str, parts: Parts, todo: set, mine: list, rows: int, chunk_rows: int,
                top_k: int, shard: tuple[int, int]) -> None:
    """Every chunk in `todo` tagged and written; the others only screened, for their ids."""
    own_rows = sum(min(chunk_rows, rows - i * chunk_rows) for i in mine)
    finished = sum(read_json(parts.summary(i))["rows"] for i in mine if i not in todo)
    desc = "tagging" if shard[1] == 1 else f"tagging shard {shard[0]}/{shard[1]}"
    progress = bar(total=own_rows, desc=desc, initial=finished, unit="row", smoothing=0.1)
    seen, base = {}, source.resolve().parent
    tagged_by = f"{getattr(predictor, 'device', '')} {str(getattr(predictor, 'dtype', '')).replace('torch.', '')}"
    for i, frame in enumerate(catalogue_chunks(source, chunk_rows, encoding)):
        started = time.perf_counter()
        chunk = screen(frame, i * chunk_rows + 1, base, seen, ids_only=i not in todo)
        if i in todo:
            parts.write(i, tag_rows(predictor, chunk, top_k), chunk, time.perf_counter() - started, tagged_by.strip())
            progress.update(len(frame))
    progress.close()
    unread = sorted(i for i in todo if not parts.done(i))
    if unread:
        raise CatalogueError(f"{source.name} has fewer rows than when the job began (chunks {_listed(unread)} were "
                             f"never read): it changed while being tagged; delete {parts.dir} and start again")


def describe(summary: dict, out) -> str:
    """The end of a job in a few lines: rows, time, and every fault with one example."""
    seconds = summary["seconds"]
    rate = summary["rows"] / seconds if seconds else 0.0
    lines = [f"tagged {summary['tagged']:,} of {summary['rows']:,} rows into {out} ({seconds:,.0f} s of tagging, "
             f"{rate:,.1f} rows/s)"]
    for key, n in sorted(summary["counts"].items()):
        lines.append(f"  {key}: {n:,} row(s), e.g. {summary['examples'][key]}")
    if len(summary.get("tagged_by", [])) > 1:
        lines.append(f"  parts tagged on {' and '.join(summary['tagged_by'])}: their probabilities may differ in the "
                     f"last digits from one device's")
    if summary["refused"]:
        lines.append(f"  {summary['refused']:,} refused row(s) with their reasons: {refused_path(out)}")
    return "\n".join(lines)
