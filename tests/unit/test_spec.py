from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from freshcast.spec import (
    DATA_ROOTS_ENV,
    DEFAULT_PIPELINES_DIR,
    MAX_LISTED_PROBLEMS,
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    QUOTE_LIMIT,
    GapSpec,
    PipelineSpec,
    ResampleSpec,
    SpecError,
    SplitSpec,
    load_spec,
    load_valid_specs,
    quote,
    resolve_source_path,
    source_location,
    spec_problems,
)

BASE = {
    "source": {"path": "data.csv"},
    "timestamp": "ts",
    "frequency": "D",
    "target": "y",
    "window": 3,
    "models": [{"type": "lstm"}],
}


def write_spec(folder: Path, fields: dict, name: str = "demo") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def spec_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path.resolve()}: ")
    return message


def without(key: str) -> dict:
    return {k: v for k, v in BASE.items() if k != key}


# --- the bundled specs ----------------------------------------------------------------------


def test_bundled_daily_spec_loads():
    path = DEFAULT_PIPELINES_DIR / "seattle_weather.yaml"
    spec = load_spec(path)
    assert spec.name == "seattle_weather"
    assert spec.dag_id == "train_seattle_weather"
    assert spec.spec_path == path.resolve()
    assert spec.source.package == "vega_datasets"
    assert spec.source.resource == "_data/seattle-weather.csv"
    assert source_location(spec) == "vega_datasets:_data/seattle-weather.csv"
    assert spec.features == ["temp_max", "temp_min", "precipitation", "wind"]
    calendar = ["cal_dayofyear_sin", "cal_dayofyear_cos"]
    assert spec.columns == ["temp_max", "temp_min", "precipitation", "wind", *calendar]
    assert spec.data_columns == ["temp_max", "temp_min", "precipitation", "wind"]
    assert spec.gaps == GapSpec(fill="interpolate", max_missing=3)
    assert spec.resample is None
    assert spec.grid_frequency == "D"
    assert spec.model_names == ["lstm", "gru"]
    assert spec.model("gru").units == [64]
    assert spec.model("gru").learning_rate == 0.001
    assert spec.member_names == [f"{m}-s{k}" for m in ("lstm", "gru") for k in (1, 2, 3)]


def test_bundled_weekly_spec_loads_with_defaults_filled():
    spec = load_spec(DEFAULT_PIPELINES_DIR / "seattle_weekly.yaml")
    assert spec.name == "seattle_weekly"
    assert spec.features == ["temp_max"]  # default: [target]
    assert spec.columns == ["temp_max", "cal_dayofyear_sin", "cal_dayofyear_cos"]
    assert spec.resample == ResampleSpec(frequency="W-SUN", aggregation="mean")
    assert spec.grid_frequency == "W-SUN"
    assert spec.split == SplitSpec(val=26, test=52)
    assert spec.split.sizes(209) == (131, 26, 52)
    assert spec.gaps == GapSpec(fill="none", max_missing=0)
    assert (spec.scaler, spec.seed, spec.owner) == ("minmax", 42, "freshcast")
    assert spec.model_names == ["simple_rnn", "lstm"]
    lstm = spec.model("lstm")
    assert (lstm.dropout, lstm.bidirectional, lstm.optimizer, lstm.loss) == (
        0.0,
        False,
        "adam",
        "mse",
    )


def test_bundled_folder_has_no_problems():
    names = [spec.name for spec in load_valid_specs(DEFAULT_PIPELINES_DIR)]
    assert {"seattle_weather", "seattle_weekly"} <= set(names)
    assert spec_problems(DEFAULT_PIPELINES_DIR) == []


# --- defaults ------------------------------------------------------------------------------


def test_unnamed_models_are_named_after_their_type():
    spec = PipelineSpec.model_validate(
        {**BASE, "name": "demo", "models": [{"type": "lstm"}, {"type": "lstm"}, {"type": "gru"}]}
    )
    assert spec.model_names == ["lstm", "lstm_2", "gru"]


def test_default_model_name_skips_a_name_already_taken():
    spec = PipelineSpec.model_validate(
        {**BASE, "name": "demo", "models": [{"type": "gru", "name": "lstm"}, {"type": "lstm"}]}
    )
    assert spec.model_names == ["lstm", "lstm_2"]
    assert spec.model("lstm_2").type == "lstm"


def test_model_spec_defaults():
    model = PipelineSpec.model_validate({**BASE, "name": "demo"}).models[0]
    assert model.units == [64]
    assert (model.batch_size, model.epochs, model.patience) == (32, 100, 10)
    assert model.learning_rate == 1e-3


def test_unknown_model_name_lists_the_known_ones():
    spec = PipelineSpec.model_validate({**BASE, "name": "demo"})
    with pytest.raises(KeyError, match=r"has no model 'gru'; it has \['lstm'\]"):
        spec.model("gru")


def test_features_default_to_target_and_columns_append_the_target():
    assert PipelineSpec.model_validate({**BASE, "name": "a", "features": []}).features == ["y"]
    spec = PipelineSpec.model_validate({**BASE, "name": "a", "features": ["x1", "x2"]})
    assert spec.columns == ["x1", "x2", "y"]


def test_name_defaults_to_the_file_stem(tmp_path):
    spec = load_spec(write_spec(tmp_path, BASE, name="my_pipeline"))
    assert spec.name == "my_pipeline"
    assert spec.spec_path == (tmp_path / "my_pipeline.yaml").resolve()


# --- every spec error names the file, the field and what was received -------------------------


def test_invalid_yaml(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("target: y\nmodels: [unclosed\n", encoding="utf-8")
    message = spec_error(path)
    assert "not valid YAML" in message
    assert "line" in message


@pytest.mark.parametrize(
    ("text", "received"),
    [
        ("- a\n- b\n", "Received: list"),
        ("just text\n", "Received: str"),
        ("", "Received: NoneType"),
    ],
)
def test_yaml_that_is_not_a_mapping(tmp_path, text, received):
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    message = spec_error(path)
    assert "a spec must be a YAML mapping of fields" in message
    assert message.endswith(received)


def test_name_must_match_the_file_name(tmp_path):
    message = spec_error(write_spec(tmp_path, {**BASE, "name": "other"}))
    assert "field 'name' is 'other' but the file is 'demo.yaml'" in message


def test_missing_spec_file(tmp_path):
    message = spec_error(tmp_path / "absent.yaml")
    assert "cannot read the spec" in message


@pytest.mark.parametrize(
    ("changes", "field", "reason", "received"),
    [
        pytest.param(
            {"frequency": "5days"},
            "frequency",
            "must be a pandas offset alias",
            "Received: '5days'",
            id="frequency-alias",
        ),
        pytest.param(
            {"resample": {"frequency": "weekly"}},
            "resample.frequency",
            "must be a pandas offset alias",
            "Received: 'weekly'",
            id="resample-frequency-alias",
        ),
        pytest.param(
            {"models": [{"type": "transformer"}]},
            "models.0.type",
            "Input should be 'simple_rnn', 'lstm' or 'gru'",
            "Received: 'transformer'",
            id="model-type",
        ),
        pytest.param(
            {"models": [{"type": "lstm", "units": [0]}]},
            "models.0.units.0",
            "greater than 0",
            "Received: 0",
            id="units-zero",
        ),
        pytest.param(
            {"models": [{"type": "gru"}, {"type": "lstm", "units": [32, -4]}]},
            "models.1.units.1",
            "greater than 0",
            "Received: -4",
            id="units-negative",
        ),
        pytest.param(
            {"models": [{"type": "lstm", "dropout": 1.0}]},
            "models.0.dropout",
            "less than 1",
            "Received: 1.0",
            id="dropout-one",
        ),
        pytest.param(
            {"colour": "red"},
            "colour",
            "Extra inputs are not permitted",
            "Received: 'red'",
            id="unknown-field",
        ),
        pytest.param(
            {"models": [{"type": "lstm", "layers": 2}]},
            "models.0.layers",
            "Extra inputs are not permitted",
            "Received: 2",
            id="unknown-model-field",
        ),
        pytest.param(
            {"models": []},
            "models",
            "at least 1 item",
            "Received: []",
            id="no-models",
        ),
        pytest.param(
            {"models": [{"type": "lstm", "name": "m"}, {"type": "gru", "name": "m"}]},
            "models",
            "model names must be unique; repeated: ['m']",
            "Received: [{'name': 'm', 'type': 'lstm'}, {'name': 'm', 'type': 'gru'}]",
            id="duplicate-model-names",
        ),
        pytest.param(
            {"features": ["x", "y", "x"]},
            "features",
            "lists a column twice",
            "Received: ['x', 'y', 'x']",
            id="feature-twice",
        ),
        pytest.param(
            {"features": ["ts", "y"]},
            "features",
            "the timestamp column 'ts' cannot be a feature",
            "Received: ['ts', 'y']",
            id="timestamp-as-feature",
        ),
        pytest.param(
            {"target": "ts"},
            "target",
            "the timestamp column 'ts' cannot be the target",
            "Received: 'ts'",
            id="timestamp-as-target",
        ),
        pytest.param(
            {"source": {"path": "a.csv", "package": "pkg", "resource": "a.csv"}},
            "source",
            "give either `path` or `package` + `resource`, not both or neither",
            "Received: {'package': 'pkg', 'path': 'a.csv', 'resource': 'a.csv'}",
            id="source-both",
        ),
        pytest.param(
            {"source": {}},
            "source",
            "give either `path` or `package` + `resource`, not both or neither",
            "Received: {}",
            id="source-neither",
        ),
        pytest.param(
            {"source": {"path": "data.xlsx"}},
            "source",
            "source must be a .csv or .parquet file",
            "Received: 'data.xlsx'",
            id="source-suffix",
        ),
        pytest.param(
            {"source": {"package": "pkg", "resource": "data/table.json"}},
            "source",
            "source must be a .csv or .parquet file",
            "Received: 'data/table.json'",
            id="resource-suffix",
        ),
        pytest.param(
            {"source": {"package": "vega_datasets"}},
            "source",
            "`package` needs `resource`",
            "Received: {'package': 'vega_datasets'}",
            id="package-without-resource",
        ),
        pytest.param(
            {"split": {"val": 0.5, "test": 0.4}},
            "split",
            "val + test fractions leave too little for training: 0.90 >= 0.9",
            "Received: {'test': 0.4, 'val': 0.5}",
            id="split-fractions",
        ),
        pytest.param(
            {"gaps": {"fill": "none", "max_missing": 2}},
            "gaps",
            "`max_missing` > 0 needs a `fill` method",
            "Received: {'fill': 'none', 'max_missing': 2}",
            id="gaps-without-fill",
        ),
        pytest.param(
            {"window": 0},
            "window",
            "greater than 0",
            "Received: 0",
            id="window-zero",
        ),
        pytest.param(
            {"gate": {"margin": 1.5}},
            "gate",
            "a relative margin must be below 1 (it is a fraction). Received: 1.5",
            "Received: 1.5",
            id="gate-relative-margin",
        ),
        pytest.param(
            {"gate": {"margin": -0.1}},
            "gate.margin",
            "greater than or equal to 0",
            "Received: -0.1",
            id="gate-negative-margin",
        ),
        pytest.param(
            {"forecast": {"schedule": "every day"}},
            "forecast.schedule",
            "must be a cron expression",
            "Received: 'every day'",
            id="forecast-schedule",
        ),
        pytest.param(
            {"source": {"path": "landing/", "duplicates": "newest"}},
            "source.duplicates",
            "Input should be 'last', 'first' or 'error'",
            "Received: 'newest'",
            id="source-duplicates",
        ),
        pytest.param(
            {"training_queue": "gpu workers"},
            "training_queue",
            "String should match pattern",
            "Received: 'gpu workers'",
            id="training-queue",
        ),
        pytest.param(
            {"source": {"path": "data.txt"}},
            "source",
            "source must be a .csv or .parquet file, a glob, or a folder ending in '/'",
            "Received: 'data.txt'",
            id="source-suffix",
        ),
    ],
)
def test_field_errors_name_the_field_and_the_received_value(
    tmp_path, changes, field, reason, received
):
    message = spec_error(write_spec(tmp_path, {**BASE, **changes}))
    assert "1 problem(s) in the pipeline spec" in message
    assert f"field '{field}': " in message
    assert reason in message
    assert message.count(received) == 1
    assert "Fix the field(s) above" in message


@pytest.mark.parametrize("missing", ["target", "models", "timestamp", "source"])
def test_missing_required_field(tmp_path, missing):
    message = spec_error(write_spec(tmp_path, without(missing)))
    assert f"field '{missing}': Field required." in message


def test_bad_name_from_the_file_stem(tmp_path):
    message = spec_error(write_spec(tmp_path, BASE, name="Bad-Name"))
    assert "field 'name': " in message
    assert "Received: 'Bad-Name'" in message


def test_every_problem_is_listed(tmp_path):
    message = spec_error(write_spec(tmp_path, {**without("target"), "window": -1, "seed": "x"}))
    assert "3 problem(s)" in message
    for field in ("target", "window", "seed"):
        assert f"field '{field}': " in message


# --- the split ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "rows", "sizes"),
    [
        ({}, 100, (70, 15, 15)),
        ({"val": 0.1, "test": 0.2}, 50, (35, 5, 10)),
        ({"val": 26, "test": 52}, 200, (122, 26, 52)),
        ({"val": 0.25, "test": 3}, 20, (12, 5, 3)),
    ],
)
def test_split_sizes(split, rows, sizes):
    assert SplitSpec.model_validate(split).sizes(rows) == sizes


def test_split_counts_are_ints_and_fractions_floats():
    split = SplitSpec(val=26, test=0.2)
    assert isinstance(split.val, int)
    assert isinstance(split.test, float)


def test_split_counts_do_not_count_towards_the_fraction_limit():
    assert SplitSpec(val=0.8, test=5).sizes(100) == (15, 80, 5)


# --- folders and paths ----------------------------------------------------------------------


def test_one_broken_spec_does_not_hide_the_good_one(tmp_path):
    write_spec(tmp_path, BASE, name="good")
    broken = write_spec(tmp_path, {**BASE, "window": 0}, name="broken")
    (tmp_path / "notes.txt").write_text("not a spec", encoding="utf-8")
    assert [spec.name for spec in load_valid_specs(tmp_path)] == ["good"]
    problems = spec_problems(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{broken.resolve()}: ")
    assert "field 'window'" in problems[0]


def test_yml_suffix_is_a_spec_too(tmp_path):
    path = tmp_path / "short.yml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    assert [spec.name for spec in load_valid_specs(tmp_path)] == ["short"]


def test_relative_source_path_starts_at_the_spec_folder(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = load_spec(write_spec(folder, {**BASE, "source": {"path": "data/*.csv"}}))
    expected = folder.resolve() / "data" / "*.csv"
    assert resolve_source_path(spec) == expected
    assert source_location(spec) == str(expected)


def test_absolute_source_path_is_kept(tmp_path):
    data = tmp_path / "elsewhere" / "series.parquet"
    spec = load_spec(write_spec(tmp_path, {**BASE, "source": {"path": str(data)}}))
    assert resolve_source_path(spec) == data


def test_source_path_without_a_spec_file_stays_relative():
    spec = PipelineSpec.model_validate({**BASE, "name": "demo"})
    assert spec.spec_path is None
    assert resolve_source_path(spec) == Path("data.csv")


@pytest.mark.parametrize("schedule", ["@daily", "@quarterly", "0 6 * * 1", "*/15 * * * *", None])
def test_schedule_accepts_presets_cron_and_null(tmp_path, schedule):
    spec = load_spec(write_spec(tmp_path, {**BASE, "schedule": schedule}))
    assert spec.schedule == schedule


def test_schedule_error_names_the_field(tmp_path):
    message = spec_error(write_spec(tmp_path, {**BASE, "schedule": "every day at six"}))
    assert "field 'schedule'" in message
    assert "'every day at six'" in message


@pytest.mark.parametrize("path", ["landing/", "landing/*", "parts/2024-*.parquet", "data.pq"])
def test_source_may_be_a_folder_or_glob(tmp_path, path):
    spec = load_spec(write_spec(tmp_path, {**BASE, "source": {"path": path}}))
    assert spec.source.path == path
    assert spec.source.duplicates == "last"


def test_gate_and_forecast_defaults(tmp_path):
    spec = load_spec(write_spec(tmp_path, BASE))
    assert spec.gate.margin == 0.0 and spec.gate.margin_type == "relative"
    assert spec.gate.keep == 5 and spec.gate.skip_unchanged is True
    assert spec.forecast.schedule == "@daily"
    assert spec.training_queue == "training"
    assert (spec.dag_id, spec.forecast_dag_id, spec.rollback_dag_id) == (
        "train_demo",
        "forecast_demo",
        "rollback_demo",
    )


def test_absolute_margin_may_exceed_one(tmp_path):
    spec = load_spec(
        write_spec(tmp_path, {**BASE, "gate": {"margin": 2.5, "margin_type": "absolute"}})
    )
    assert spec.gate.margin == 2.5


# --- reading a spec is bounded: size, anchors and aliases, nesting, quoted values -------------


def billion_laughs(levels: int = 6) -> str:
    """A valid spec plus `levels` nested aliases: 9**levels strings from a few hundred bytes."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    lines.append(f"tags: *a{levels}")
    return yaml.safe_dump(BASE) + "\n".join(lines) + "\n"


@pytest.mark.timeout(20)
def test_billion_laughs_is_refused_briefly_and_the_other_specs_load(tmp_path):
    write_spec(tmp_path, BASE, name="good")
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text(billion_laughs(), encoding="utf-8")
    assert laughs.stat().st_size < 1024
    assert [spec.name for spec in load_valid_specs(tmp_path)] == ["good"]
    problems = spec_problems(tmp_path)
    assert len(problems) == 1
    assert len(problems[0]) < 500
    assert problems[0].startswith(f"{laughs.resolve()}: line 9: &a0: ")
    assert "may not use YAML anchors or aliases" in problems[0]
    assert problems[0].endswith("write the value out")


@pytest.mark.parametrize(
    ("text", "line", "written"),
    [
        pytest.param("tags: &t [a, b]\n", 7, "&t", id="anchor-alone"),
        pytest.param("x: &u [8]\nmodels:\n- {type: lstm, units: *u}\n", 7, "&u", id="alias"),
        pytest.param("models:\n- {type: lstm}\n- {<<: *m}\n", 9, "*m", id="merge-key"),
    ],
)
def test_anchors_and_aliases_are_refused_with_their_line(tmp_path, text, line, written):
    fields = yaml.safe_dump({k: v for k, v in BASE.items() if k != "models"})
    assert fields.count("\n") == 6  # so the text's first line is line 7
    path = tmp_path / "demo.yaml"
    path.write_text(fields + text, encoding="utf-8")
    message = spec_error(path)
    assert f": line {line}: {written}: a spec may not use YAML anchors or aliases" in message


def test_a_star_or_ampersand_inside_a_value_is_no_alias(tmp_path):
    spec = load_spec(
        write_spec(tmp_path, {**BASE, "schedule": "*/15 * * * *", "description": "R&D *load*"})
    )
    assert spec.schedule == "*/15 * * * *"
    assert spec.description == "R&D *load*"


def test_spec_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = write_spec(tmp_path, BASE)
    padding = "# " + "x" * 78 + "\n"
    with path.open("a", encoding="utf-8") as file:
        file.write(padding * (MAX_SPEC_BYTES // len(padding) + 1))
    size = path.stat().st_size

    def no_reading(*args, **kwargs):
        raise AssertionError("the spec was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_text", no_reading)
    message = spec_error(path)
    assert f"the spec is {size:,} bytes, over the limit of {MAX_SPEC_BYTES:,} bytes" in message


@pytest.mark.timeout(20)
def test_a_spec_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    write_spec(tmp_path, BASE, name="good")
    os.mkfifo(tmp_path / "pipe.yaml")  # opening a FIFO blocks until someone writes
    assert [spec.name for spec in load_valid_specs(tmp_path)] == ["good"]
    [problem] = spec_problems(tmp_path)
    assert (
        problem
        == f"{tmp_path.resolve() / 'pipe.yaml'}: cannot read the spec: it is not a regular file"
    )


def test_deep_nesting_is_refused_without_crashing_the_process(tmp_path):
    # libyaml's composer recurses once per level: 30,000 levels overflow the C stack, a crash
    # no except clause catches, so the check runs in a child process.
    write_spec(tmp_path, BASE, name="good")
    deep = tmp_path / "deep.yaml"
    deep.write_text(yaml.safe_dump(BASE) + "tags: " + "[" * 30_000 + "]" * 30_000 + "\n")
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from freshcast.spec import load_valid_specs, spec_problems\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "print(json.dumps([[s.name for s in load_valid_specs(folder)], spec_problems(folder)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    names, problems = json.loads(out.stdout)
    assert names == ["good"]
    assert problems == [
        f"{deep.resolve()}: line 9: nested more than {MAX_SPEC_DEPTH} levels deep; "
        "a spec needs four (models > model > units > unit)"
    ]


def test_spec_that_is_not_utf8_names_the_line_and_the_others_load(tmp_path):
    write_spec(tmp_path, BASE, name="good")
    path = tmp_path / "latin.yaml"
    text = yaml.safe_dump(BASE) + "description: caf\xe9\n"
    path.write_bytes(text.encode("latin-1"))
    offset = text.index("\xe9")
    message = spec_error(path)
    assert message == (
        f"{path.resolve()}: line 9 is not UTF-8 text (byte 0xe9 at byte offset {offset}); "
        "save the spec as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
    )
    assert [spec.name for spec in load_valid_specs(tmp_path)] == ["good"]


def test_long_received_values_are_quoted_in_part(tmp_path):
    long = "x" * 5000
    message = spec_error(write_spec(tmp_path, {**BASE, "frequency": long, long: 1}))
    assert f"Received: '{'x' * (QUOTE_LIMIT - 1)}… (5,002 characters)" in message
    assert f"field '{'x' * QUOTE_LIMIT}… (5,000 characters)': " in message
    assert len(message) < 2000


def test_long_name_is_quoted_in_part(tmp_path):
    message = spec_error(write_spec(tmp_path, {**BASE, "name": "n" * 5000}))
    assert "field 'name' is 'nnn" in message
    assert "… (5,002 characters) but the file is 'demo.yaml'" in message
    assert len(message) < 1000


def test_many_problems_are_counted_and_the_first_listed(tmp_path):
    extra = {f"unknown_{i:03}": i for i in range(100)}
    message = spec_error(write_spec(tmp_path, {**BASE, **extra}))
    assert "100 problem(s) in the pipeline spec" in message
    assert message.count("Extra inputs are not permitted") == MAX_LISTED_PROBLEMS
    assert f"... and {100 - MAX_LISTED_PROBLEMS} more, not listed" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("short", "'short'"),
        ("y" * 400, f"'{'y' * (QUOTE_LIMIT - 1)}… (402 characters)"),
        (list(range(200)), f"{str(list(range(200)))[:QUOTE_LIMIT]}… (890 characters)"),
    ],
)
def test_quote_keeps_short_values_and_cuts_long_ones(value, shown):
    assert quote(value) == shown


# --- source paths: written out, under the spec's folder or FRESHCAST_DATA_ROOTS ---------------


@pytest.mark.parametrize("path", ["$SECRET_TOKEN/data.csv", "${SECRET_TOKEN}.csv", "~/data.csv"])
def test_environment_variables_and_home_are_not_expanded(tmp_path, monkeypatch, path):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-do-not-show")
    monkeypatch.setenv("HOME", str(tmp_path))
    message = spec_error(write_spec(tmp_path, {**BASE, "source": {"path": path}}))
    assert "field 'source.path': Value error, environment variables and `~` are not expanded" in (
        message
    )
    assert "hunter2" not in message


@pytest.fixture
def no_data_roots(monkeypatch):
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)


def outside_message(spec_file: Path, shown: str) -> str:
    folder = spec_file.resolve().parent
    return (
        f"{spec_file.resolve()}: field 'source.path': {shown} lies outside the folders a source "
        f"may read from (the spec's folder and those in {DATA_ROOTS_ENV}); move the data under "
        f"{folder} or add its folder to {DATA_ROOTS_ENV}"
    )


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("{tmp}/elsewhere/series.csv", "{tmp}/elsewhere/series.csv"),
        (
            "../elsewhere/series.csv",
            "{tmp}/specs/../elsewhere/series.csv, which resolves to {tmp}/elsewhere/series.csv,",
        ),
        ("../elsewhere/*.csv", "{tmp}/specs/../elsewhere, which resolves to {tmp}/elsewhere,"),
        ("/etc/", "/etc"),
    ],
)
def test_source_outside_the_spec_folder_is_refused_at_load(tmp_path, no_data_roots, path, shown):
    folder = tmp_path / "specs"
    folder.mkdir()
    spec_file = write_spec(folder, {**BASE, "source": {"path": path.format(tmp=tmp_path)}})
    assert spec_error(spec_file) == outside_message(spec_file, shown.format(tmp=tmp_path))


def test_a_symlink_out_of_the_spec_folder_is_refused_at_load(tmp_path, no_data_roots):
    folder = tmp_path / "specs"
    folder.mkdir()
    (tmp_path / "secret.csv").write_text("ts,y\n", encoding="utf-8")
    (folder / "data.csv").symlink_to(tmp_path / "secret.csv")
    spec_file = write_spec(folder, BASE)
    shown = f"{folder / 'data.csv'}, which resolves to {tmp_path / 'secret.csv'},"
    assert spec_error(spec_file) == outside_message(spec_file, shown)


def test_data_roots_let_a_source_read_elsewhere(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    data = tmp_path / "data" / "series.csv"
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join(["/nonexistent", str(data.parent)]))
    spec = load_spec(write_spec(folder, {**BASE, "source": {"path": str(data)}}))
    assert resolve_source_path(spec) == data
    spec = load_spec(write_spec(folder, {**BASE, "source": {"path": "../data/*.csv"}}))
    assert resolve_source_path(spec) == folder.resolve() / ".." / "data" / "*.csv"


def test_a_relative_data_root_is_refused_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join(["/data", "relative/secret"]))
    spec_file = write_spec(tmp_path, {**BASE, "source": {"path": "/elsewhere/a.csv"}})
    assert spec_error(spec_file) == (
        f"{spec_file.resolve()}: field 'source.path' cannot be checked: {DATA_ROOTS_ENV} entry "
        f"2 is not an absolute path; list absolute folders separated by {os.pathsep!r}"
    )


def test_package_sources_ignore_the_data_roots(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOTS_ENV, "relative")
    source = {"package": "vega_datasets", "resource": "_data/seattle-weather.csv"}
    spec = load_spec(write_spec(tmp_path, {**BASE, "source": source}))
    assert source_location(spec) == "vega_datasets:_data/seattle-weather.csv"


# --- two files, one pipeline ----------------------------------------------------------------


def test_two_files_of_one_pipeline_are_both_left_out_and_reported(tmp_path):
    write_spec(tmp_path, BASE, name="good")
    yaml_file = write_spec(tmp_path, BASE, name="twice")
    yml_file = tmp_path / "twice.yml"
    yml_file.write_text(yaml.safe_dump({**BASE, "window": 5}), encoding="utf-8")
    assert [spec.name for spec in load_valid_specs(tmp_path)] == ["good"]
    assert spec_problems(tmp_path) == [
        f"{yaml_file.resolve()}: {yml_file.resolve()} also defines pipeline 'twice'; neither "
        "file is loaded, as it is ambiguous which is meant. Delete or rename one of them."
    ]


def test_two_files_of_one_pipeline_are_reported_even_when_one_is_broken(tmp_path):
    write_spec(tmp_path, {**BASE, "window": 0}, name="twice")
    (tmp_path / "twice.yml").write_text("not: [valid", encoding="utf-8")
    assert load_valid_specs(tmp_path) == []
    [problem] = spec_problems(tmp_path)
    assert "also defines pipeline 'twice'" in problem


# --- issue 12: calendar inputs, timestamps in several columns, seeds, searches, gate baselines


def test_calendar_inputs_come_after_the_features_and_before_a_separate_target(tmp_path):
    fields = {**BASE, "features": ["x", "z"], "calendar": ["dayofweek", "dayofyear"]}
    spec = load_spec(write_spec(tmp_path, fields))
    calendar = ["cal_dayofweek_sin", "cal_dayofweek_cos", "cal_dayofyear_sin", "cal_dayofyear_cos"]
    assert spec.calendar_columns == calendar
    assert spec.input_columns == ["x", "z", *calendar]
    assert spec.columns == ["x", "z", *calendar, "y"]
    assert spec.data_columns == ["x", "z", "y"]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"calendar": ["hour"]}, "(top level)", "do not vary on the 'D' grid"),
        ({"calendar": ["month", "month"]}, "(top level)", "twice"),
        (
            {"frequency": "h", "resample": {"frequency": "MS"}, "calendar": ["dayofweek"]},
            "(top level)",
            "'MS' grid",
        ),
        ({"features": ["y", "cal_hour_sin"]}, "features", "kept for calendar inputs"),
        ({"timestamp": ["date", "date"]}, "timestamp", "twice"),
        ({"gaps": {"fill": "ffill", "edges": "fill"}}, "gaps", "needs `max_missing` > 0"),
        ({"models": [{"type": "lstm", "seeds": 0}]}, "models.0.seeds", "greater than or equal"),
        ({"models": [{"type": "lstm", "seeds": 21}]}, "models.0.seeds", "less than or equal"),
        ({"gate": {"beat": ["ridge", "arima"]}}, "gate.beat.1", "'persistence'"),
        (
            {"features": ["x"], "models": [{"type": "lstm", "base": "persistence"}]},
            "(top level)",
            "must be one of the `features`",
        ),
        (
            {"season_length": 7, "models": [{"type": "gru", "base": "seasonal_naive"}]},
            "(top level)",
            "at least season_length (7) steps; the shortest is 3",
        ),
    ],
)
def test_new_fields_that_cannot_work_are_refused_by_name(tmp_path, fields, field, words):
    message = spec_error(write_spec(tmp_path, {**BASE, **fields}))
    assert f"field '{field}'" in message and words in message, message


def test_calendar_components_allowed_on_an_hourly_grid(tmp_path):
    fields = {**BASE, "frequency": "h", "calendar": ["hour", "dayofweek", "dayofyear", "month"]}
    assert len(load_spec(write_spec(tmp_path, fields)).calendar_columns) == 8


def test_a_timestamp_in_several_columns_names_the_time_index(tmp_path):
    fields = {**BASE, "timestamp": ["Date", "Time"], "timestamp_format": "%d/%m/%Y %H.%M.%S"}
    spec = load_spec(write_spec(tmp_path, fields))
    assert spec.timestamp_columns == ["Date", "Time"] and spec.timestamp_name == "Date+Time"
    message = spec_error(write_spec(tmp_path, {**BASE, "timestamp": ["y", "Time"]}))
    assert "field 'target'" in message and "cannot be the target" in message


def test_seeds_and_a_search_name_every_mapped_task(tmp_path):
    search = {"trials": 3, "learning_rate": [1e-4, 1e-2], "lr_sweep": {}}
    models = [{"type": "lstm", "seeds": 3, "tune": search}, {"type": "gru"}]
    spec = load_spec(write_spec(tmp_path, {**BASE, "seed": 7, "models": models}))
    assert spec.members == {
        "lstm-s1": ("lstm", 7),
        "lstm-s2": ("lstm", 8),
        "lstm-s3": ("lstm", 9),
        "gru": ("gru", 7),
    }
    assert spec.trials == {f"lstm-{t}": "lstm" for t in ("lr", "t1", "t2", "t3")}
    assert spec.model("lstm").tune.lr_sweep.low == 1e-5  # the sweep's defaults


def test_the_gate_beats_ridge_by_default(tmp_path):
    assert load_spec(write_spec(tmp_path, BASE)).gate.beat == [
        "persistence",
        "seasonal_naive",
        "ridge",
    ]


# --- issue 13: intervals, backtest, drift, tracking ----------------------------------------


def test_intervals_backtest_drift_and_tracking_defaults(tmp_path):
    spec = load_spec(write_spec(tmp_path, BASE))
    assert spec.intervals == [0.8, 0.95]
    assert spec.backtest is None  # off: no fold tasks, nothing slower
    assert (spec.drift.enabled, spec.drift.ratio, spec.drift.min_steps) == (True, 1.5, 10)
    assert spec.tracking.mlflow_uri is None
    fields = {**BASE, "intervals": [0.95, 0.5], "backtest": {"folds": 3}}
    spec = load_spec(write_spec(tmp_path, fields))
    assert spec.intervals == [0.5, 0.95]  # sorted
    assert (spec.backtest.folds, spec.backtest.gate) == (3, False)
    assert load_spec(write_spec(tmp_path, {**BASE, "intervals": []})).intervals == []


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"intervals": [0.8, 0.8]}, "intervals", "twice"),
        ({"intervals": [1.0]}, "intervals.0", "less than 1"),
        ({"backtest": {"folds": 1}}, "backtest.folds", "greater than or equal to 2"),
        ({"backtest": {"folds": 3, "every": 2}}, "backtest.every", "Extra inputs"),
        ({"drift": {"ratio": 1.0}}, "drift.ratio", "greater than 1"),
        ({"drift": {"min_steps": 20, "recent": 10}}, "drift", "at least `min_steps`"),
    ],
)
def test_interval_backtest_and_drift_errors_name_the_field(tmp_path, fields, field, words):
    message = spec_error(write_spec(tmp_path, {**BASE, **fields}))
    assert f"field '{field}'" in message and words in message, message


def test_pipeline_of_reads_the_pipeline_from_its_dag_ids():
    from freshcast.spec import pipeline_of

    assert pipeline_of("train_seattle_weather") == "seattle_weather"
    assert pipeline_of("forecast_x") == "x"
    assert pipeline_of("rollback_x_2") == "x_2"
    assert pipeline_of("train_") is None
    assert pipeline_of("someone_elses_dag") is None
    assert pipeline_of("train_Not-A-Name") is None


def test_shard_of_is_stable_and_spreads_names():
    from freshcast.spec import shard_of

    # crc32, not Python's salted hash(): the same file in every process and on every machine.
    assert [shard_of(n, 8) for n in ("seattle_weather", "co2_monthly", "a")] == [
        zlib.crc32(n.encode()) % 8 for n in ("seattle_weather", "co2_monthly", "a")
    ]
    counts = Counter(shard_of(f"store_{i}", 8) for i in range(1000))
    assert len(counts) == 8 and min(counts.values()) > 90  # about 125 each


def test_specs_to_build_reads_its_shard_or_only_the_named_pipeline(tmp_path, monkeypatch):
    from freshcast import spec as spec_module
    from freshcast.spec import shard_of, specs_to_build

    names = [f"p{i}" for i in range(24)]
    for name in names:
        write_spec(tmp_path, BASE, name=name)
    read = []
    real = spec_module._read_yaml
    monkeypatch.setattr(
        spec_module, "_read_yaml", lambda path: read.append(path.stem) or real(path)
    )

    shard = shard_of("p5", 4)
    mine = [n for n in sorted(names) if shard_of(n, 4) == shard]
    built = specs_to_build(None, shard=shard, shards=4, folder=tmp_path)
    assert [s.name for s in built] == mine and read == mine

    read.clear()
    assert [s.name for s in specs_to_build("train_p5", shard=shard, shards=4, folder=tmp_path)] == [
        "p5"
    ]
    assert read == ["p5"]
    other = next(k for k in range(4) if k != shard)
    read.clear()
    assert "p5" not in [
        s.name for s in specs_to_build("train_p5", shard=other, shards=4, folder=tmp_path)
    ]
    assert "p5" not in read
    # A DAG id of no pipeline here: the whole shard, as the dag-processor builds it.
    assert [
        s.name for s in specs_to_build("other_dag", shard=shard, shards=4, folder=tmp_path)
    ] == mine
    with pytest.raises(ValueError, match=r"Received: shard=4"):
        specs_to_build(None, shard=4, shards=4, folder=tmp_path)
