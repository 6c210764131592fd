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

A timestamp made of several columns (`timestamp: [year, month, day, hour]`, or `[Date, Time]`)
is combined in each file into one column named `spec.timestamp_name` (`year+month+day+hour`,
`Date+Time`), placed first: date parts become ISO 8601 text (`2014-03-09T05:00:00`), checked
here as whole numbers in range; other columns are joined with one space, as text, for validate to
parse with `timestamp_format`.

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


def read_file(path: Path, columns: list[str], *, text: list[str] | None = None) -> pd.DataFrame:
    """Read one CSV or Parquet file, only `columns` where present; timestamps stay unparsed.

    Args:
        path: the file.
        columns: the columns to keep, where present.
        text: columns read from a CSV as text (default: `columns[0]`, the timestamp).

    Raises:
        SourceError: naming the file: it cannot be read, a CSV is not UTF-8 (with the line and
            byte offset), or it is empty (no bytes, or a header and no rows).
    """
    csv = path.suffix.lower() == ".csv"
    text = columns[:1] if text is None else text
    try:
        if path.stat().st_size == 0:
            raise SourceError(
                f"{path} is empty: it has no bytes; deliver the file again or remove it"
            )
        if csv:
            header = pd.read_csv(path, nrows=0).columns
            usecols = [c for c in columns if c in header] or None
            # The timestamp as text: validate's messages show it as written, and "09" stays
            # "09" when it is joined with another column.
            frame = pd.read_csv(path, usecols=usecols, dtype={c: str for c in text if c in header})
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
        (rows, 1 + columns) frame: the timestamp column `spec.timestamp_name` first (several
        timestamp columns combined into it, see `join_timestamp`), then the spec's
        `data_columns` found. Rows whose timestamp cannot be parsed are kept so validate can
        report them.

    Raises:
        SourceError: as `source_files` and `read_file`, and as `join_timestamp` for a
            timestamp of several columns (a file lacks one, a date part is not a whole number
            in range).
    """
    name = spec.timestamp_name
    wanted = [*spec.timestamp_columns, *spec.data_columns]
    frames = [
        join_timestamp(read_file(path, wanted, text=spec.timestamp_columns), spec, source=path)
        for path in files or source_files(spec)
    ]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame[[c for c in [name, *spec.data_columns] if c in frame.columns]]
    form = timestamp_format(spec)
    if len(frames) > 1 and name in frame.columns:
        frame = combine_partitions(frame, name, keep=spec.source.duplicates, format=form)
    if cutoff is not None and name in frame.columns:
        stamps = to_utc(frame[name], format=form, errors="coerce")
        keep = stamps.isna() | (stamps <= pd.Timestamp(cutoff).tz_convert("UTC"))
        frame = frame.loc[keep.to_numpy()].reset_index(drop=True)
    return frame


def combine_partitions(
    frame: pd.DataFrame, timestamp: str, *, keep: str, format: str | None = None
) -> pd.DataFrame:
    """Rows of several files in read order -> rows ordered by time, one per timestamp.

    Args:
        frame: (rows, columns), the files' rows concatenated in file-name order.
        timestamp: the timestamp column (unparsed text or datetimes).
        keep: "last" or "first" keeps that row of each duplicated timestamp; "error" keeps
            every row, so validate reports the duplicate with its row numbers.
        format: the timestamps' strftime format (`timestamp_format`); None: ISO 8601 or what
            pandas infers.

    Returns:
        The rows sorted by timestamp (stable, so equal stamps keep read order), duplicates
        resolved; rows whose timestamp cannot be parsed are kept at the end for validate.
    """
    stamps = to_utc(frame[timestamp], format=format, errors="coerce")
    order = np.argsort(stamps.to_numpy(dtype="datetime64[ns]"), kind="stable")  # NaT last
    frame, stamps = frame.iloc[order], stamps.iloc[order]
    if keep != "error":
        duplicated = stamps.duplicated(keep=keep).to_numpy() & stamps.notna().to_numpy()
        frame = frame.loc[~duplicated] if duplicated.any() else frame
    return frame.reset_index(drop=True)


# Date parts a timestamp may be made of, in order, with their ranges (a day's depends on the
# month) and the value a part left out takes.
TIMESTAMP_PARTS = {
    "year": (1, 9999, 1),
    "month": (1, 12, 1),
    "day": (1, 31, 1),
    "hour": (0, 23, 0),
    "minute": (0, 59, 0),
    "second": (0, 59, 0),
}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def timestamp_parts(spec: PipelineSpec) -> dict[str, str] | None:
    """{part: column} when the spec's timestamp is several date-part columns, else None.

    A timestamp of several columns is made of date parts when every column is named after one
    of TIMESTAMP_PARTS (year, month, day, hour, minute, second; any case), e.g. [Year, Month,
    Day, Hour]; otherwise its columns are text to join (e.g. [Date, Time]).

    Raises:
        SourceError: naming the spec field: a part twice, parts that skip one (year, day
            without month) or lack the year, or `timestamp_format` set for date parts.
    """
    columns = spec.timestamp_columns
    if len(columns) < 2 or any(c.lower() not in TIMESTAMP_PARTS for c in columns):
        return None
    parts = {c.lower(): c for c in columns}
    where = f"{spec.spec_path or f'pipeline {spec.name!r}'}: field 'timestamp'"
    if len(parts) < len(columns):
        raise SourceError(f"{where} names a date part twice: {quote(columns)}; list each part once")
    order = list(TIMESTAMP_PARTS)
    wanted = order[: max(order.index(p) for p in parts) + 1]
    if skipped := [p for p in wanted if p not in parts]:
        raise SourceError(
            f"{where}: the date parts {quote(columns)} skip {skipped}; a timestamp of date "
            f"parts names them in order from the year ({', '.join(wanted)}). Add the column(s)."
        )
    if spec.timestamp_format is not None:
        raise SourceError(
            f"{where}: the date parts {quote(columns)} are combined as ISO 8601, so "
            f"`timestamp_format` ({quote(spec.timestamp_format)}) does not apply; remove it"
        )
    return parts


def timestamp_format(spec: PipelineSpec) -> str | None:
    """The strftime format of the timestamp column after `join_timestamp`: the spec's
    `timestamp_format`, or None (ISO 8601) for date parts."""
    return None if timestamp_parts(spec) else spec.timestamp_format


def join_timestamp(frame: pd.DataFrame, spec: PipelineSpec, *, source: object) -> pd.DataFrame:
    """Several timestamp columns -> one column named `spec.timestamp_name`, placed first.

    Date parts (see `timestamp_parts`) become ISO 8601 text, `2014-03-09T05:00:00`, a part
    left out taking its first value (month and day 1, hour, minute and second 0); other
    columns are joined, as text, with one space (`10/03/2004 18.00.00`), and a row missing any
    of them gets no timestamp, for validate to report. A one-column timestamp is left as it is.

    Args:
        frame: (rows, columns) one file's rows as read, the timestamp columns among them.
        spec: the pipeline spec.
        source: the file, for messages.

    Returns:
        (rows, columns - len(spec.timestamp_columns) + 1): the combined column, then the other
        columns; `frame` itself for a one-column timestamp.

    Raises:
        SourceError: naming the file: a timestamp column is missing, or a date part is empty,
            not a whole number, or out of range (with the column, the row and the value).
    """
    columns = spec.timestamp_columns
    if len(columns) == 1:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{source}: column {missing[0]!r} (spec field 'timestamp') is missing; the file "
            f"has {clip(str(list(frame.columns)))}. Fix the spec field or the file's header."
        )
    parts = timestamp_parts(spec)
    if parts is None:
        text = [frame[c].astype("string") for c in columns]
        joined = text[0].str.cat(text[1:], sep=" ")  # <NA> where any part is missing
        stamps = joined.astype(object).where(joined.notna(), None)
    else:
        stamps = pd.Series(_iso_from_parts(frame, parts, source), index=frame.index)
    rest = frame.drop(columns=columns)
    return pd.concat([stamps.rename(spec.timestamp_name), rest], axis=1)


def _iso_from_parts(frame: pd.DataFrame, parts: dict[str, str], source: object) -> np.ndarray:
    """(rows,) ISO 8601 text from date-part columns, each checked: a whole number in range."""
    values = {}
    for part, (low, high, default) in TIMESTAMP_PARTS.items():
        if part not in parts:
            values[part] = np.full(len(frame), default, dtype=np.int64)
            continue
        column = frame[parts[part]]
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        if part == "day":  # the month's length; year and month are checked already
            year, month = values["year"], values["month"]
            leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
            high = _DAYS_IN_MONTH[month - 1] + ((month == 2) & leap)
        bad = np.flatnonzero(~whole | (numbers < low) | (numbers > high))
        if bad.size:
            i = int(bad[0])
            value = column.iloc[i]
            if pd.isna(value):
                what = "is empty"
            elif not whole[i]:
                what = f"{quote(value)} is not a whole number"
            else:
                what = f"{quote(value)} is out of range {low}..{high if part != 'day' else high[i]}"
            raise SourceError(
                f"{source}: column {parts[part]!r} ({part}), row {i + 1}: {what} ({bad.size} "
                f"such row(s)). A {part} must be a whole number from {low} to "
                f"{'the days in its month' if part == 'day' else high}; fix the data."
            )
        values[part] = numbers.astype(np.int64)
    stamps = (values["year"] - 1970).astype("datetime64[Y]").astype("datetime64[M]")
    stamps = stamps + (values["month"] - 1).astype("timedelta64[M]")
    stamps = (
        stamps.astype("datetime64[s]")
        + (values["day"] - 1).astype("timedelta64[D]")
        + values["hour"].astype("timedelta64[h]")
        + values["minute"].astype("timedelta64[m]")
        + values["second"].astype("timedelta64[s]")
    )
    return np.datetime_as_string(stamps, unit="s").astype(object)


def data_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a frame's content (columns, dtypes and values), independent of file format."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def to_utc(values: pd.Series, *, format: str | None = None, errors: str = "raise") -> pd.Series:
    """Parse timestamps to UTC; naive ones are taken as UTC.

    Args:
        values: (rows,) timestamps as text or datetimes.
        format: strftime format of the text (the spec's `timestamp_format`); None tries ISO
            8601 first, as it is fast, then what pandas infers row by row.
        errors: "raise", or "coerce" to NaT what does not parse.

    Returns:
        (rows,) tz-aware UTC datetimes on `values`' index.
    """
    if format is not None:
        return pd.to_datetime(values, utc=True, format=format, errors=errors)
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(values, utc=True, format="mixed", errors=errors)
