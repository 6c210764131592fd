from __future__ import annotations

import glob
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from freshcast.ingest import SourceError, load_source, source_files, to_utc
from freshcast.spec import DATA_ROOTS_ENV, PipelineSpec


@pytest.fixture(autouse=True)
def data_under_tmp_path(tmp_path, monkeypatch):
    """Specs built in code have no spec folder: let their sources read under tmp_path."""
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))


def make_spec(source: dict, **changes) -> PipelineSpec:
    fields = {
        "name": "demo",
        "source": source,
        "timestamp": "ts",
        "frequency": "D",
        "target": "y",
        "features": ["x"],
        "window": 2,
        "models": [{"type": "lstm"}],
    }
    return PipelineSpec.model_validate({**fields, **changes})


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_keeps_only_the_spec_columns_timestamp_first(tmp_path):
    path = write_csv(
        tmp_path / "series.csv",
        "y,note,x,ts\n1.5,a,10,2024-01-01\n2.5,b,20,2024-01-02\n",
    )
    frame = load_source(make_spec({"path": str(path)}))
    # columns: timestamp, then spec.columns = features + target
    assert list(frame.columns) == ["ts", "x", "y"]
    assert frame["ts"].tolist() == ["2024-01-01", "2024-01-02"]
    assert frame["x"].tolist() == [10, 20]
    assert frame["y"].tolist() == [1.5, 2.5]


def test_timestamps_stay_unparsed_text(tmp_path):
    path = write_csv(tmp_path / "s.csv", "ts,x,y\n20240101,1,2\n")
    frame = load_source(make_spec({"path": str(path)}))
    assert frame["ts"].tolist() == ["20240101"]


def test_columns_the_data_lacks_are_left_for_validate(tmp_path):
    path = write_csv(tmp_path / "s.csv", "ts,y\n2024-01-01,1\n")
    frame = load_source(make_spec({"path": str(path)}))
    assert list(frame.columns) == ["ts", "y"]


def test_relative_path_starts_at_the_spec_folder(tmp_path, monkeypatch):
    write_csv(tmp_path / "data" / "s.csv", "ts,x,y\n2024-01-01,1,2\n")
    spec = make_spec({"path": "data/s.csv"}).model_copy(
        update={"spec_path": tmp_path / "demo.yaml"}
    )
    monkeypatch.chdir(tmp_path / "data")  # not the spec folder
    assert source_files(spec) == [tmp_path / "data" / "s.csv"]
    assert load_source(spec)["y"].tolist() == [2]


def test_glob_reads_every_match_sorted_and_concatenated(tmp_path, monkeypatch):
    # A file system lists a folder in any order; make it list this one backwards.
    real_glob = glob.glob
    monkeypatch.setattr(glob, "glob", lambda pattern: sorted(real_glob(pattern), reverse=True))
    write_csv(tmp_path / "part-2.csv", "ts,x,y\n2024-01-03,3,30\n2024-01-04,4,40\n")
    write_csv(tmp_path / "part-1.csv", "ts,x,y\n2024-01-01,1,10\n2024-01-02,2,20\n")
    write_csv(tmp_path / "other.txt", "ts,x,y\n1999-01-01,0,0\n")
    spec = make_spec({"path": str(tmp_path / "part-*.csv")})
    assert source_files(spec) == [tmp_path / "part-1.csv", tmp_path / "part-2.csv"]
    frame = load_source(spec)
    assert frame["ts"].tolist() == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert frame["y"].tolist() == [10, 20, 30, 40]
    assert frame.index.tolist() == [0, 1, 2, 3]


def test_glob_matching_nothing_names_the_path(tmp_path):
    spec = make_spec({"path": str(tmp_path / "missing" / "*.csv")})
    with pytest.raises(SourceError) as info:
        load_source(spec)
    message = str(info.value)
    assert f"source.path '{tmp_path / 'missing' / '*.csv'}'" in message
    assert "matches no .csv or .parquet file" in message


def test_parquet_file(tmp_path):
    path = tmp_path / "series.parquet"
    pd.DataFrame(
        {
            "extra": [0, 0, 0],
            "y": [1.0, 2.0, 3.0],
            "ts": pd.date_range("2024-01-01", periods=3, freq="D"),
            "x": [4.0, 5.0, 6.0],
        }
    ).to_parquet(path)
    frame = load_source(make_spec({"path": str(path)}))
    assert list(frame.columns) == ["ts", "x", "y"]
    assert frame["y"].tolist() == [1.0, 2.0, 3.0]
    assert frame["x"].tolist() == [4.0, 5.0, 6.0]
    assert frame["ts"].tolist() == list(pd.date_range("2024-01-01", periods=3, freq="D"))


def test_parquet_with_cutoff(tmp_path):
    path = tmp_path / "series.pq"
    pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=4, freq="D"),
            "x": [1, 2, 3, 4],
            "y": [5, 6, 7, 8],
        }
    ).to_parquet(path)
    frame = load_source(make_spec({"path": str(path)}), cutoff=datetime(2024, 1, 2, tzinfo=UTC))
    assert frame["y"].tolist() == [5, 6]


def test_package_resource():
    spec = make_spec(
        {"package": "vega_datasets", "resource": "_data/seattle-weather.csv"},
        timestamp="date",
        target="temp_max",
        features=["temp_max", "wind"],
    )
    frame = load_source(spec)
    assert frame.shape == (1461, 3)
    assert list(frame.columns) == ["date", "temp_max", "wind"]
    assert frame["date"].iloc[0] == "2012/01/01"
    assert frame["date"].iloc[-1] == "2015/12/31"


def test_missing_package_is_named():
    spec = make_spec({"package": "no_such_freshcast_pkg", "resource": "data.csv"})
    with pytest.raises(
        SourceError, match=re.escape("source.package 'no_such_freshcast_pkg' is not installed")
    ):
        load_source(spec)


def test_package_without_the_file_is_named():
    spec = make_spec({"package": "vega_datasets", "resource": "_data/no-such-file.csv"})
    with pytest.raises(
        SourceError,
        match=re.escape("source vega_datasets:_data/no-such-file.csv: no such file in the package"),
    ):
        load_source(spec)


CUTOFF_CSV = (
    "ts,x,y\n"
    "2024-01-01,1,10\n"
    "2024-01-02,2,20\n"
    "not a date,3,30\n"
    "2024-01-03,4,40\n"
    "2024-01-03T00:30:00+01:00,5,50\n"
    "2024-01-04,6,60\n"
)


def test_cutoff_keeps_rows_at_or_before_it_and_unparseable_rows(tmp_path):
    spec = make_spec({"path": str(write_csv(tmp_path / "s.csv", CUTOFF_CSV))})
    frame = load_source(spec, cutoff=datetime(2024, 1, 2, tzinfo=UTC))
    assert frame["ts"].tolist() == ["2024-01-01", "2024-01-02", "not a date"]
    assert frame["y"].tolist() == [10, 20, 30]
    assert frame.index.tolist() == [0, 1, 2]


def test_cutoff_in_another_time_zone_compares_instants(tmp_path):
    spec = make_spec({"path": str(write_csv(tmp_path / "s.csv", CUTOFF_CSV))})
    # 2024-01-03 01:00 at +01:00 is 2024-01-03 00:00 UTC: the naive 2024-01-03 (taken as UTC)
    # and 2024-01-03T00:30+01:00 (= 2024-01-02 23:30 UTC) are known, 2024-01-04 is not.
    cutoff = datetime(2024, 1, 3, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    frame = load_source(spec, cutoff=cutoff)
    assert frame["y"].tolist() == [10, 20, 30, 40, 50]


def test_cutoff_just_before_a_row_drops_it(tmp_path):
    spec = make_spec({"path": str(write_csv(tmp_path / "s.csv", CUTOFF_CSV))})
    cutoff = datetime(2024, 1, 2, 23, 59, tzinfo=UTC)
    assert load_source(spec, cutoff=cutoff)["y"].tolist() == [10, 20, 30, 50]


def test_no_cutoff_keeps_every_row(tmp_path):
    spec = make_spec({"path": str(write_csv(tmp_path / "s.csv", CUTOFF_CSV))})
    assert load_source(spec)["y"].tolist() == [10, 20, 30, 40, 50, 60]


def test_to_utc_takes_naive_as_utc_and_converts_aware():
    stamps = to_utc(pd.Series(["2024-01-01", "2024-01-01T05:00:00+02:00"]))
    assert stamps.tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 03:00", tz="UTC"),
    ]


def test_to_utc_coerces_what_it_cannot_parse():
    stamps = to_utc(pd.Series(["2024/01/02", "garbage"]), errors="coerce")
    assert stamps.iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert pd.isna(stamps.iloc[1])


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(SourceError, match=re.escape("broken.parquet: cannot read it as parquet")):
        load_source(make_spec({"path": str(path)}))


# --- landing folders: several partitions, late and corrected rows -------------------------------


def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    write_csv(folder / "2024-01-a.csv", "ts,x,y\n2024-01-01,1,10\n2024-01-02,2,20\n")
    # Arrives later, overlaps the first file on 2 January with a corrected value, and is
    # itself out of order.
    write_csv(folder / "2024-01-b.csv", "ts,x,y\n2024-01-04,4,40\n2024-01-02,2,21\n")
    pd.DataFrame({"ts": ["2024-01-03"], "x": [3], "y": [30]}).to_parquet(
        folder / "2024-01-c.parquet"
    )
    write_csv(folder / ".2024-01-d.csv.tmp", "ts,x,y\n2024-01-05,5,50\n")  # still being written
    write_csv(folder / "_SUCCESS", "")
    write_csv(folder / "notes.txt", "not data")
    return folder


def test_landing_folder_reads_csv_and_parquet_and_skips_hidden_files(tmp_path):
    folder = landing(tmp_path)
    spec = make_spec({"path": f"{folder}/"})
    assert [p.name for p in source_files(spec)] == [
        "2024-01-a.csv",
        "2024-01-b.csv",
        "2024-01-c.parquet",
    ]
    frame = load_source(spec)
    assert pd.to_datetime(frame["ts"]).dt.day.tolist() == [1, 2, 3, 4]  # ordered by time
    assert frame["y"].tolist() == [10, 21, 30, 40]  # the file read last wins on 2 January
    assert frame.index.tolist() == [0, 1, 2, 3]


def test_duplicates_first_keeps_the_earliest_file(tmp_path):
    spec = make_spec({"path": f"{landing(tmp_path)}/", "duplicates": "first"})
    assert load_source(spec)["y"].tolist() == [10, 20, 30, 40]


def test_duplicates_error_leaves_them_for_validate_to_report(tmp_path):
    from freshcast.validate import DataValidationError, validate_frame

    spec = make_spec(
        {"path": f"{landing(tmp_path)}/", "duplicates": "error"}, gaps={"fill": "none"}
    )
    frame = load_source(spec)
    assert frame["y"].tolist() == [10, 20, 21, 30, 40]
    with pytest.raises(DataValidationError, match="rows 2 and 3: duplicate timestamp"):
        validate_frame(frame, spec, source="landing/")


def test_cutoff_applies_to_the_combined_partitions(tmp_path):
    spec = make_spec({"path": f"{landing(tmp_path)}/"})
    frame = load_source(spec, cutoff=datetime(2024, 1, 2, tzinfo=UTC))
    assert frame["y"].tolist() == [10, 21]


def test_unparsable_timestamps_of_a_partition_reach_validate(tmp_path):
    folder = landing(tmp_path)
    write_csv(folder / "2024-01-e.csv", "ts,x,y\nyesterday,9,90\n")
    frame = load_source(make_spec({"path": f"{folder}/"}))
    assert frame["ts"].iloc[-1] == "yesterday"  # kept, last, for validate's message


def test_data_fingerprint_follows_content_not_format(tmp_path):
    from freshcast.ingest import data_fingerprint

    folder = landing(tmp_path)
    spec = make_spec({"path": f"{folder}/"})
    first = data_fingerprint(load_source(spec))
    assert data_fingerprint(load_source(spec)) == first
    write_csv(folder / "2024-01-f.csv", "ts,x,y\n2024-01-05,5,50\n")
    assert data_fingerprint(load_source(spec)) != first
    (folder / "2024-01-f.csv").unlink()
    write_csv(folder / "2024-01-b.csv", "ts,x,y\n2024-01-04,4,40\n2024-01-02,2,22\n")
    assert data_fingerprint(load_source(spec)) != first  # a corrected value is a change


# --- what a source may read: under the spec's folder or FRESHCAST_DATA_ROOTS, links resolved ----


def spec_file_in(folder: Path, source: dict) -> Path:
    """A spec file in `folder` whose source is `source`."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    fields = make_spec(source).model_dump(mode="json", exclude={"name"})
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def refusal(spec_file: Path, shown: str) -> str:
    return (
        f"{spec_file.resolve()}: field 'source.path': {shown} lies outside the folders a source "
        f"may read from (the spec's folder and those in {DATA_ROOTS_ENV}); move the data under "
        f"{spec_file.resolve().parent} or add its folder to {DATA_ROOTS_ENV}"
    )


@pytest.mark.parametrize("source", ["landing/", "landing/*.csv"])
def test_a_symlink_out_of_the_landing_folder_is_refused(tmp_path, monkeypatch, source):
    from freshcast.spec import load_spec

    monkeypatch.delenv(DATA_ROOTS_ENV)
    folder = tmp_path / "pipelines"
    write_csv(folder / "landing" / "a.csv", "ts,x,y\n2024-01-01,1,10\n")
    secret = write_csv(tmp_path / "secret" / "b.csv", "ts,x,y\n2024-01-02,2,20\n")
    (folder / "landing" / "b.csv").symlink_to(secret)
    spec_file = spec_file_in(folder, {"path": source})
    spec = load_spec(spec_file)  # the folder itself is allowed
    with pytest.raises(SourceError) as info:
        source_files(spec)
    link = folder / "landing" / "b.csv"
    assert str(info.value) == refusal(spec_file, f"{link}, which resolves to {secret},")
    monkeypatch.setenv(DATA_ROOTS_ENV, str(secret.parent))
    assert source_files(spec) == [folder / "landing" / "a.csv", secret]


def test_a_symlinked_folder_out_of_the_spec_folder_is_refused(tmp_path, monkeypatch):
    from freshcast.spec import load_spec

    monkeypatch.delenv(DATA_ROOTS_ENV)
    folder = tmp_path / "pipelines"
    write_csv(tmp_path / "elsewhere" / "a.csv", "ts,x,y\n2024-01-01,1,10\n")
    folder.mkdir()
    (folder / "parts").symlink_to(tmp_path / "elsewhere")
    spec_file = spec_file_in(folder, {"path": "*/a.csv"})
    with pytest.raises(SourceError) as info:
        source_files(load_spec(spec_file))
    shown = f"{folder / 'parts' / 'a.csv'}, which resolves to {tmp_path / 'elsewhere' / 'a.csv'},"
    assert str(info.value) == refusal(spec_file, shown)


def test_a_symlink_inside_the_spec_folder_is_read_as_its_target(tmp_path, monkeypatch):
    from freshcast.spec import load_spec

    monkeypatch.delenv(DATA_ROOTS_ENV)
    folder = tmp_path / "pipelines"
    target = write_csv(folder / "exports" / "2024.csv", "ts,x,y\n2024-01-01,1,10\n")
    (folder / "landing").mkdir()
    (folder / "landing" / "current.csv").symlink_to(target)
    spec = load_spec(spec_file_in(folder, {"path": "landing/"}))
    assert source_files(spec) == [target]
    assert load_source(spec)["y"].tolist() == [10]


def test_a_spec_built_in_code_reads_under_the_pipelines_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOTS_ENV)
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(tmp_path / "pipelines"))
    inside = write_csv(tmp_path / "pipelines" / "s.csv", "ts,x,y\n2024-01-01,1,2\n")
    outside = write_csv(tmp_path / "s.csv", "ts,x,y\n2024-01-01,1,2\n")
    assert source_files(make_spec({"path": str(inside)})) == [inside]
    with pytest.raises(SourceError) as info:
        source_files(make_spec({"path": str(outside)}))
    assert str(info.value).startswith(f"pipeline 'demo': field 'source.path': {outside} lies ")


# --- messages that name the file: not UTF-8, empty ----------------------------------------------


def test_a_csv_that_is_not_utf8_names_the_line_and_the_fix(tmp_path):
    text = "ts,x,y\n2024-01-01,1,10\n2024-01-02,caf\xe9,20\n"
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SourceError) as info:
        load_source(make_spec({"path": str(path)}))
    assert str(info.value) == (
        f"{path}: line 3 is not UTF-8 text (byte 0xe9 at byte offset {text.index('é')}); "
        "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 latin.csv > fixed.csv`"
    )


def test_find_non_utf8_agrees_for_every_chunk_size(tmp_path):
    from freshcast.ingest import find_non_utf8

    # A two-byte character and a newline just before the bad byte, so some chunk sizes cut the
    # character in two and some put the newline and the bad byte in different chunks.
    data = "ts,y\nzürich,1\nä\n".encode() + b"b\xe9\n"
    path = tmp_path / "s.csv"
    path.write_bytes(data)
    expected = (4, data.index(b"\xe9"), 0xE9)
    for chunk_bytes in range(1, len(data) + 2):
        assert find_non_utf8(path, chunk_bytes=chunk_bytes) == expected, chunk_bytes


def test_find_non_utf8_spots_a_character_cut_at_the_end(tmp_path):
    from freshcast.ingest import find_non_utf8

    path = tmp_path / "s.csv"
    path.write_bytes("ts\nü\n".encode() + "ü".encode()[:1])
    assert find_non_utf8(path, chunk_bytes=2) == (3, 6, 0xC3)
    path.write_bytes("ts\nü\n".encode())
    assert find_non_utf8(path, chunk_bytes=2) is None


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("zero.csv", b"", "is empty: it has no bytes; deliver the file again or remove it"),
        ("zero.parquet", b"", "is empty: it has no bytes; deliver the file again or remove it"),
        (
            "header.csv",
            b"ts,x,y\n",
            "is empty: it has a header but no rows; deliver its rows or remove the file",
        ),
        (
            "blank.csv",
            b"\n\n",
            "is empty: it has no header and no rows; deliver the file again or remove it",
        ),
    ],
)
def test_an_empty_file_is_called_empty_by_name(tmp_path, name, content, said):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        load_source(make_spec({"path": str(path)}))
    assert str(info.value) == f"{path} {said}"


def test_a_parquet_file_without_rows_is_called_empty(tmp_path):
    path = tmp_path / "none.parquet"
    pd.DataFrame({"ts": pd.Series([], dtype=str), "x": [], "y": []}).to_parquet(path)
    with pytest.raises(SourceError) as info:
        load_source(make_spec({"path": str(path)}))
    assert str(info.value) == (
        f"{path} is empty: it has columns but no rows; deliver its rows or remove the file"
    )


def test_an_empty_partition_of_a_landing_folder_is_named(tmp_path):
    folder = landing(tmp_path)
    write_csv(folder / "2024-01-e.csv", "ts,x,y\n")
    with pytest.raises(SourceError, match=re.escape(f"{folder / '2024-01-e.csv'} is empty: ")):
        load_source(make_spec({"path": f"{folder}/"}))


def test_a_long_package_name_is_quoted_in_part():
    spec = make_spec({"package": "p" * 1000, "resource": "data.csv"})
    with pytest.raises(SourceError) as info:
        load_source(spec)
    assert f"source.package '{'p' * 299}… (1,002 characters) is not installed" in str(info.value)


# --- timestamps of several columns: date parts, or text joined with a space -----------------------

PARTS = ["year", "month", "day", "hour"]


def test_date_parts_become_one_iso_column_first(tmp_path):
    path = write_csv(
        tmp_path / "s.csv",
        "No,year,month,day,hour,y,x\n1,2014,3,9,5,1.5,10\n2,2014,3,9,6,2.5,20\n3,2016,2,29,23,3,30\n",
    )
    frame = load_source(make_spec({"path": str(path)}, timestamp=PARTS, frequency="h"))
    assert list(frame.columns) == ["year+month+day+hour", "x", "y"]
    assert frame["year+month+day+hour"].tolist() == [
        "2014-03-09T05:00:00",
        "2014-03-09T06:00:00",
        "2016-02-29T23:00:00",
    ]
    assert frame["y"].tolist() == [1.5, 2.5, 3.0]


def test_date_parts_in_any_case_from_parquet_and_a_part_left_out(tmp_path):
    path = tmp_path / "s.parquet"
    pd.DataFrame({"Year": [2024, 2024], "Month": [1, 2], "y": [1.0, 2.0], "x": [3, 4]}).to_parquet(
        path
    )
    frame = load_source(make_spec({"path": str(path)}, timestamp=["Year", "Month"], frequency="MS"))
    assert frame["Year+Month"].tolist() == ["2024-01-01T00:00:00", "2024-02-01T00:00:00"]


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ("2014,3,9,5.5", "column 'hour' (hour), row 2: '5.5' is not a whole number"),
        ("2014,3,9,24", "column 'hour' (hour), row 2: '24' is out of range 0..23"),
        ("2014,13,9,5", "column 'month' (month), row 2: '13' is out of range 1..12"),
        ("2014,2,29,5", "column 'day' (day), row 2: '29' is out of range 1..28"),
        ("2014,3,,5", "column 'day' (day), row 2: is empty"),
        ("two,3,9,5", "column 'year' (year), row 2: 'two' is not a whole number"),
    ],
)
def test_a_bad_date_part_names_the_file_the_column_and_the_row(tmp_path, row, said):
    path = write_csv(tmp_path / "s.csv", f"year,month,day,hour,y,x\n2014,3,9,4,1,2\n{row},1,2\n")
    with pytest.raises(SourceError) as info:
        load_source(make_spec({"path": str(path)}, timestamp=PARTS, frequency="h"))
    assert str(info.value).startswith(f"{path}: {said} (1 such row(s)). A ")
    assert str(info.value).endswith("; fix the data.")


def test_a_file_without_a_timestamp_column_is_named(tmp_path):
    path = write_csv(tmp_path / "s.csv", "year,month,hour,y,x\n2014,3,4,1,2\n")
    with pytest.raises(SourceError) as info:
        load_source(make_spec({"path": str(path)}, timestamp=PARTS, frequency="h"))
    assert str(info.value) == (
        f"{path}: column 'day' (spec field 'timestamp') is missing; the file has "
        "['year', 'month', 'hour', 'y', 'x']. Fix the spec field or the file's header."
    )


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"timestamp": ["year", "day"]}, "the date parts ['year', 'day'] skip ['month']"),
        ({"timestamp": ["month", "day"]}, "the date parts ['month', 'day'] skip ['year']"),
        ({"timestamp": ["year", "Year"]}, "names a date part twice: ['year', 'Year']"),
        (
            {"timestamp": ["year", "month"], "timestamp_format": "%Y"},
            "are combined as ISO 8601, so `timestamp_format` ('%Y') does not apply; remove it",
        ),
    ],
)
def test_date_parts_that_cannot_make_a_timestamp_name_the_spec_field(tmp_path, changes, said):
    path = write_csv(tmp_path / "s.csv", "year,Year,month,day,y,x\n2014,2014,3,9,1,2\n")
    with pytest.raises(SourceError) as info:
        load_source(make_spec({"path": str(path)}, **changes))
    assert str(info.value).startswith("pipeline 'demo': field 'timestamp'")
    assert said in str(info.value)


DATE_TIME = {"timestamp": ["Date", "Time"], "timestamp_format": "%d/%m/%Y %H.%M.%S"}


def test_text_columns_are_joined_with_a_space_and_parsed_by_validate(tmp_path):
    from freshcast.validate import validate_frame

    path = write_csv(
        tmp_path / "s.csv",
        "Date;Time;y;x\n"
        "10/03/2004;18.00.00;1;10\n"
        "10/03/2004;19.00.00;2;20\n"
        "10/03/2004;;3;30\n".replace(";", ","),
    )
    spec = make_spec({"path": str(path)}, frequency="h", **DATE_TIME)
    frame = load_source(spec)
    assert list(frame.columns) == ["Date+Time", "x", "y"]
    assert frame["Date+Time"].tolist() == ["10/03/2004 18.00.00", "10/03/2004 19.00.00", None]
    with pytest.raises(
        ValueError, match=r"column 'Date\+Time' \(made of \['Date', 'Time'\]\), row 3"
    ):
        validate_frame(frame, spec, source=str(path))
    series, _ = validate_frame(frame.iloc[:2], spec, source="s", for_training=False)
    assert series.index.tolist() == [
        pd.Timestamp("2004-03-10 18:00", tz="UTC"),
        pd.Timestamp("2004-03-10 19:00", tz="UTC"),
    ]


def test_combined_stamps_are_ordered_and_cut_off_by_time_not_text(tmp_path):
    # Day-first text sorts wrongly as text: 01/04 (1 April) before 31/03 (31 March).
    folder = tmp_path / "landing"
    write_csv(folder / "a.csv", "Date,Time,y,x\n31/03/2024,23.00.00,1,1\n01/04/2024,00.00.00,2,2\n")
    write_csv(folder / "b.csv", "Date,Time,y,x\n31/03/2024,22.00.00,0,0\n01/04/2024,00.00.00,9,9\n")
    spec = make_spec({"path": f"{folder}/"}, frequency="h", **DATE_TIME)
    frame = load_source(spec)
    assert frame["Date+Time"].tolist() == [
        "31/03/2024 22.00.00",
        "31/03/2024 23.00.00",
        "01/04/2024 00.00.00",
    ]
    assert frame["y"].tolist() == [0, 1, 9]  # the file read last wins
    cut = load_source(spec, cutoff=datetime(2024, 3, 31, 23, tzinfo=UTC))
    assert cut["y"].tolist() == [0, 1]


def test_cutoff_on_date_parts(tmp_path):
    path = write_csv(
        tmp_path / "s.csv",
        "year,month,day,hour,y,x\n2014,3,9,5,1,1\n2014,3,9,6,2,2\n2014,3,10,0,3,3\n",
    )
    spec = make_spec({"path": str(path)}, timestamp=PARTS, frequency="h")
    frame = load_source(spec, cutoff=datetime(2014, 3, 9, 6, tzinfo=UTC))
    assert frame["y"].tolist() == [1, 2]


def test_to_utc_with_a_format():
    stamps = to_utc(
        pd.Series(["01/02/2024 13.30.00", "bad"]), format="%d/%m/%Y %H.%M.%S", errors="coerce"
    )
    assert stamps.iloc[0] == pd.Timestamp("2024-02-01 13:30", tz="UTC")
    assert pd.isna(stamps.iloc[1])
    with pytest.raises(ValueError):
        to_utc(pd.Series(["2024-02-01"]), format="%d/%m/%Y")
