"""Source -> DataFrame: read CSV/Parquet files (a path, a glob, a landing folder, or a file
shipped in a package).

Ingest does not judge the data (validate does): it reads the columns the spec names, keeps the
rows known at the run's cutoff and leaves timestamps as they came, so validate can point at a
bad row by its number.

A source of several files (a glob or a landing folder to which new partitions are added) is
combined by one rule: files are read in name order, rows are ordered by timestamp, and rows that
share a timestamp are resolved by `source.duplicates` (`last`, the default: the file read last
wins, so a corrected re-delivery named after the original replaces its rows). Files whose name
starts with `.` or `_` are ignored, so a writer can land a file atomically (write `.x.tmp`, then
rename) and markers such as `_SUCCESS` are skipped.

Every file read lies, symlinks resolved, under the spec's folder or a folder in
FRESHCAST_DATA_ROOTS (see `freshcast.spec`); an empty file (no bytes, or a header and no rows) is
an error that names it, as it is more likely a failed delivery than a partition without data.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from freshcast.errors import BadInputError
from freshcast.spec import (
    SOURCE_SUFFIXES,
    PipelineSpec,
    clip,
    quote,
    resolve_source_path,
    source_location,
    source_outside_roots,
)


class SourceError(BadInputError, RuntimeError):
    """The source cannot be read; the message names it and says what to do."""


def source_files(spec: PipelineSpec) -> list[Path]:
    """The files the spec's source names, sorted by name, symlinks resolved, for a path, a glob,
    a landing folder or a package resource.

    Raises:
        SourceError: the package or file is missing, nothing matches, or a file lies outside
            the folders a source may read from (a symlink pointing out of the landing folder).
    """
    if spec.source.package:
        try:
            ref = resources.files(spec.source.package).joinpath(spec.source.resource or "")
        except ModuleNotFoundError as err:
            raise SourceError(
                f"source.package {quote(spec.source.package)} is not installed; "
                "add it to requirements.txt and run `make run` again"
            ) from err
        path = Path(str(ref))
        if not path.is_file():
            raise SourceError(f"source {clip(source_location(spec))}: no such file in the package")
        return [path]
    if problem := source_outside_roots(spec):
        raise SourceError(problem)
    pattern = resolve_source_path(spec)
    if spec.source.path and spec.source.path.endswith("/"):
        pattern = pattern / "*"  # a landing folder: every data file in it
    matches = sorted(
        Path(p)
        for p in glob.glob(str(pattern))
        if Path(p).is_file()
        and not Path(p).name.startswith((".", "_"))
        and Path(p).suffix.lower() in SOURCE_SUFFIXES
    )
    if not matches:
        raise SourceError(
            f"source.path {quote(spec.source.path)} (resolved to {clip(str(pattern))}) matches "
            "no .csv or .parquet file; relative paths start at the spec's folder"
        )
    for path in matches:
        if problem := source_outside_roots(spec, path):
            raise SourceError(problem)
    return [path.resolve() for path in matches]


def read_file(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read one CSV or Parquet file, only `columns` where present; timestamps stay unparsed.

    Raises:
        SourceError: naming the file: it cannot be read, a CSV is not UTF-8 (with the line and
            byte offset), or it is empty (no bytes, or a header and no rows).
    """
    csv = path.suffix.lower() == ".csv"
    try:
        if path.stat().st_size == 0:
            raise SourceError(
                f"{path} is empty: it has no bytes; deliver the file again or remove it"
            )
        if csv:
            header = pd.read_csv(path, nrows=0).columns
            usecols = [c for c in columns if c in header] or None
            # dtype=str for the timestamp keeps the text for validate's messages.
            frame = pd.read_csv(path, usecols=usecols, dtype={columns[0]: str})
        else:
            frame = pd.read_parquet(path)
            frame = frame[[c for c in columns if c in frame.columns]]
    except UnicodeDecodeError as err:
        raise SourceError(_not_utf8(path, err)) from None
    except pd.errors.EmptyDataError:
        raise SourceError(
            f"{path} is empty: it has no header and no rows; deliver the file again or remove it"
        ) from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SourceError(f"{path}: cannot read it as {path.suffix[1:]}: {clip(str(err))}") from err
    if len(frame) == 0:
        # Said here by name: validate would only see no rows up to the run's cutoff.
        raise SourceError(
            f"{path} is empty: it has {'a header' if csv else 'columns'} but no rows; "
            "deliver its rows or remove the file"
        )
    return frame


def find_non_utf8(path: Path, *, chunk_bytes: int = 1 << 20) -> tuple[int, int, int] | None:
    """(1-based line, 0-based byte offset, byte value) of the first byte of `path` that is not
    UTF-8, or None; reads `chunk_bytes` at a time, so a large file costs no memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = newlines = 0  # bytes and newlines before `chunk`
    with path.open("rb") as file:
        while True:
            chunk = file.read(chunk_bytes)
            pending = len(decoder.getstate()[0])  # the start of a character cut by the chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                # err.start counts from the pending bytes, which hold no newline.
                bad = offset - pending + err.start
                line = newlines + chunk[: max(bad - offset, 0)].count(b"\n") + 1
                return line, bad, err.object[err.start]
            if not chunk:
                return None
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def _not_utf8(path: Path, err: UnicodeDecodeError) -> str:
    fix = f"re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.csv`"
    found = find_non_utf8(path)
    if found is None:  # the decoder pandas used disagrees; show what it said
        return f"{path}: not UTF-8 text: {clip(str(err))}; {fix}"
    line, offset, byte = found
    return (
        f"{path}: line {line} is not UTF-8 text (byte {byte:#04x} at byte offset {offset}); {fix}"
    )


def load_source(
    spec: PipelineSpec, *, cutoff: datetime | None = None, files: list[Path] | None = None
) -> pd.DataFrame:
    """Read the spec's source and keep the rows whose timestamp is at or before `cutoff`.

    Args:
        spec: the pipeline spec.
        cutoff: tz-aware time up to which data counts as known (the run's data_interval_end);
            naive timestamps in the data are taken as UTC. None keeps every row.
        files: the source's files when the caller already listed them (`source_files`).

    Returns:
        (rows, 1 + columns) frame: the timestamp column first, then the spec's columns found.
        Rows whose timestamp cannot be parsed are kept so validate can report them.
    """
    wanted = [spec.timestamp, *spec.columns]
    frames = [read_file(path, wanted) for path in files or source_files(spec)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame[[c for c in wanted if c in frame.columns]]
    if len(frames) > 1 and spec.timestamp in frame.columns:
        frame = combine_partitions(frame, spec.timestamp, keep=spec.source.duplicates)
    if cutoff is not None and spec.timestamp in frame.columns:
        stamps = to_utc(frame[spec.timestamp], errors="coerce")
        keep = stamps.isna() | (stamps <= pd.Timestamp(cutoff).tz_convert("UTC"))
        frame = frame.loc[keep.to_numpy()].reset_index(drop=True)
    return frame


def combine_partitions(frame: pd.DataFrame, timestamp: str, *, keep: str) -> pd.DataFrame:
    """Rows of several files in read order -> rows ordered by time, one per timestamp.

    Args:
        frame: (rows, columns), the files' rows concatenated in file-name order.
        timestamp: the timestamp column (unparsed text or datetimes).
        keep: "last" or "first" keeps that row of each duplicated timestamp; "error" keeps
            every row, so validate reports the duplicate with its row numbers.

    Returns:
        The rows sorted by timestamp (stable, so equal stamps keep read order), duplicates
        resolved; rows whose timestamp cannot be parsed are kept at the end for validate.
    """
    stamps = to_utc(frame[timestamp], errors="coerce")
    order = np.argsort(stamps.to_numpy(dtype="datetime64[ns]"), kind="stable")  # NaT last
    frame, stamps = frame.iloc[order], stamps.iloc[order]
    if keep != "error":
        duplicated = stamps.duplicated(keep=keep).to_numpy() & stamps.notna().to_numpy()
        frame = frame.loc[~duplicated] if duplicated.any() else frame
    return frame.reset_index(drop=True)


def data_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a frame's content (columns, dtypes and values), independent of file format."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def to_utc(values: pd.Series, *, errors: str = "raise") -> pd.Series:
    """Parse timestamps to UTC; naive ones are taken as UTC. ISO 8601 first, as it is fast."""
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(values, utc=True, format="mixed", errors=errors)
