from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from freshcast.spec import (
    DEFAULT_PIPELINES_DIR,
    GapSpec,
    PipelineSpec,
    ResampleSpec,
    SpecError,
    SplitSpec,
    load_spec,
    load_valid_specs,
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
    assert spec.columns == ["temp_max", "temp_min", "precipitation", "wind"]
    assert spec.gaps == GapSpec(fill="interpolate", max_missing=3)
    assert spec.resample is None
    assert spec.grid_frequency == "D"
    assert spec.model_names == ["lstm", "gru"]
    assert spec.model("gru").units == [32]
    assert spec.model("gru").learning_rate == 0.003


def test_bundled_weekly_spec_loads_with_defaults_filled():
    spec = load_spec(DEFAULT_PIPELINES_DIR / "seattle_weekly.yaml")
    assert spec.name == "seattle_weekly"
    assert spec.features == ["temp_max"]  # default: [target]
    assert spec.columns == ["temp_max"]
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
