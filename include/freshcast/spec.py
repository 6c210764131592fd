"""Typed pipeline specs: one YAML file per pipeline, validated here, defaults in one place.

This module is imported when Airflow parses the DAG files, so it must stay light: pydantic and
PyYAML only (no pandas, no TensorFlow). The DAG file and every task process read every spec, so
reading one is bounded: a spec file is at most MAX_SPEC_BYTES, holds no YAML anchors or aliases
(a 1 KB "billion laughs" expands to gigabytes) and nests at most MAX_SPEC_DEPTH levels, and an
error message quotes at most QUOTE_LIMIT characters of any value it received.

A file source (`source.path`) is read as written: `$VAR` and `~` are not expanded, so a spec
cannot read the workers' environment. It must lie, symlinks resolved, under the spec's folder or
under a folder listed in FRESHCAST_DATA_ROOTS (DATA_ROOTS_ENV: absolute folders separated by
`os.pathsep`, e.g. `/data/landing:/mnt/exports`).
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import zlib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from freshcast.errors import BadInputError

PIPELINES_DIR_ENV = "FRESHCAST_PIPELINES_DIR"
DATA_ROOTS_ENV = "FRESHCAST_DATA_ROOTS"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PIPELINES_DIR = PROJECT_ROOT / "include" / "pipelines"

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# pandas offset aliases that describe a regular grid (pandas >= 2.2 spellings).
FREQUENCY_PATTERN = re.compile(
    r"^\d*(s|min|h|D|B|W(-(MON|TUE|WED|THU|FRI|SAT|SUN))?|ME|MS|QE|QS|YE|YS)$"
)
AGGREGATIONS = ("mean", "sum", "min", "max", "median", "first", "last")
METRICS = ("mae", "rmse", "mape", "smape", "mase")
SOURCE_SUFFIXES = (".csv", ".parquet", ".pq")
SCHEDULE_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@once")
GLOB_CHARACTERS = "*?["

# A spec names its data, it does not hold it: the bundled ones are about 1 KB.
MAX_SPEC_BYTES = 64 * 1024
MAX_SPEC_DEPTH = 16
QUOTE_LIMIT = 300  # characters of a received value (or of a parser's message) an error shows
MAX_LISTED_PROBLEMS = 20

Fraction = Annotated[float, Field(gt=0, lt=1)]

# Calendar components a spec may add as cyclic (sin, cos) inputs, each with the coarsest grid on
# which it still varies: rank of the grid's unit (s=0 ... Y=7) must be at most this.
CALENDAR_COMPONENTS = {
    "minute": 0,  # minute of the hour: grids under a minute
    "hour": 2,  # hour of the day: grids of seconds, minutes or hours
    "dayofweek": 3,
    "dayofmonth": 4,
    "dayofyear": 6,
    "month": 6,
}
_UNIT_RANK = {"s": 0, "min": 1, "h": 2, "D": 3, "B": 3, "W": 4, "M": 5, "Q": 6, "Y": 7}
MAX_SEEDS = 20
MAX_TRIALS = 200
MAX_FOLDS = 20
# A member of a model with several seeds, a tuning trial, a learning-rate sweep: "<model>-s2".
MEMBER_SEPARATOR = "-"


class SpecError(BadInputError, ValueError):
    """A pipeline spec that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """Where the series comes from: a file, a glob or a landing folder, or a packaged file."""

    path: str | None = Field(
        default=None,
        description="CSV or Parquet file, glob, or folder ending in '/' (a landing folder); "
        "relative paths start at the spec's folder.",
    )
    package: str | None = Field(default=None, description="Installed package holding the file.")
    resource: str | None = Field(default=None, description="File inside `package`.")
    duplicates: Literal["last", "first", "error"] = Field(
        default="last",
        description="Rows of a multi-file source that share a timestamp: keep the one read last "
        "(files in name order), the one read first, or fail validation.",
    )

    @field_validator("path")
    @classmethod
    def _written_out(cls, value: str | None) -> str | None:
        # Expanding `$VAR` would let a spec read (and an error message show) the workers'
        # environment, which holds secrets under docker compose.
        if value is not None and ("$" in value or value.startswith("~")):
            raise ValueError(
                "environment variables and `~` are not expanded; write the path out, relative "
                "to the spec's folder or absolute"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        if (self.path is None) == (self.package is None):
            raise ValueError("give either `path` or `package` + `resource`, not both or neither")
        if self.package is not None and not self.resource:
            raise ValueError("`package` needs `resource`, the file's path inside the package")
        name = self.path or self.resource or ""
        if self.path is not None and (name.endswith("/") or _is_glob(name)):
            return self  # a folder or glob: its CSV and Parquet files are read
        if not name.lower().endswith(SOURCE_SUFFIXES):
            raise ValueError(
                "source must be a .csv or .parquet file, a glob, or a folder ending in '/'. "
                f"Received: {quote(name)}"
            )
        return self


class GateSpec(_Strict):
    """When a run's best model may replace the champion in service."""

    margin: float = Field(
        default=0.0,
        ge=0,
        description="How much better than the champion, on the primary metric, a candidate "
        "must be (0 means any improvement).",
    )
    margin_type: Literal["relative", "absolute"] = Field(
        default="relative",
        description="`relative`: margin is a fraction of the champion's score (0.02 = 2%); "
        "`absolute`: in the metric's units.",
    )
    keep: PositiveInt = Field(
        default=5,
        description="Registry versions kept; older ones are deleted (never the champion).",
    )
    skip_unchanged: bool = Field(
        default=True,
        description="Skip training when the data and spec equal the last decided run's.",
    )
    beat: list[Literal["persistence", "seasonal_naive", "ridge"]] = Field(
        default=["persistence", "seasonal_naive", "ridge"],
        description="Baselines a candidate must beat (strictly) on the gate's window; ridge "
        "is the linear model with its alpha chosen on the validation split.",
    )

    @model_validator(mode="after")
    def _relative_below_one(self) -> GateSpec:
        if self.margin_type == "relative" and self.margin >= 1:
            raise ValueError(
                "a relative margin must be below 1 (it is a fraction). "
                f"Received: {quote(self.margin)}"
            )
        return self


class ForecastSpec(_Strict):
    """The forecast DAG: when it runs besides each new champion."""

    schedule: str | None = Field(
        default="@daily",
        description="Cron or preset for forecast_<name>; it also runs when the champion changes.",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return _check_schedule(value)


class BacktestSpec(_Strict):
    """A rolling-origin backtest: the test split cut into `folds` consecutive blocks; fold k
    re-fits every model and baseline on all rows before its block (expanding window; the last
    `split.val` rows of them validate) and scores the block."""

    folds: int = Field(default=5, ge=2, le=MAX_FOLDS, description="Blocks of the test split.")
    gate: bool = Field(
        default=False,
        description="Decide on the folds' mean: the candidate (the best model or ensemble by "
        "that mean) must beat the baselines and the champion (its forecasts of the same "
        "blocks) on it, by the margin.",
    )


class DriftSpec(_Strict):
    """When the champion's live error asks for a retraining before the schedule does."""

    enabled: bool = True
    ratio: float = Field(
        default=1.5,
        gt=1,
        description="Drift when the champion's live MAE on its latest scored forecast steps "
        "exceeds its test MAE times this.",
    )
    min_steps: PositiveInt = Field(
        default=10, description="Scored forecast steps needed before drift is judged."
    )
    recent: PositiveInt = Field(
        default=50, description="The latest scored forecast steps of the champion compared."
    )

    @model_validator(mode="after")
    def _enough(self) -> DriftSpec:
        if self.recent < self.min_steps:
            raise ValueError(
                f"`recent` ({self.recent}) must be at least `min_steps` ({self.min_steps})"
            )
        return self


class TrackingSpec(_Strict):
    """Experiment tracking (optional): where MLflow runs and model versions go."""

    mlflow_uri: str | None = Field(
        default=None,
        max_length=500,
        description="MLflow tracking URI (e.g. http://127.0.0.1:5000); default: the "
        "MLFLOW_TRACKING_URI environment variable; neither: no tracking.",
    )


class ResampleSpec(_Strict):
    """Optional resampling to a coarser grid before anything else (e.g. daily -> weekly mean)."""

    frequency: str
    aggregation: Literal["mean", "sum", "min", "max", "median", "first", "last"] = "mean"

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        return _check_frequency(value)


class GapSpec(_Strict):
    """What to do with missing timestamps and missing values."""

    fill: Literal["none", "ffill", "interpolate"] = Field(
        default="none", description="How to fill a gap; `none` means any gap fails validation."
    )
    max_missing: int = Field(
        default=0, ge=0, description="Longest run of consecutive missing steps that may be filled."
    )
    edges: Literal["error", "fill", "trim"] = Field(
        default="error",
        description="Gaps that touch the first or last row, which interpolation cannot fill: "
        "`error` fails validation; `fill` repeats the nearest known value (at most max_missing "
        "rows); `trim` drops the rows before the first and after the last complete row. The "
        "rows affected are reported.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> GapSpec:
        if self.fill == "none" and self.max_missing > 0:
            raise ValueError("`max_missing` > 0 needs a `fill` method (ffill or interpolate)")
        if self.edges == "fill" and self.max_missing == 0:
            raise ValueError("`edges: fill` needs `max_missing` > 0, the most rows it may fill")
        return self


class SplitSpec(_Strict):
    """Chronological split; train is what remains before validation and test. No shuffling."""

    val: Fraction | PositiveInt = 0.15
    test: Fraction | PositiveInt = 0.15

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitSpec:
        fractions = [v for v in (self.val, self.test) if isinstance(v, float)]
        if sum(fractions) >= 0.9:
            raise ValueError(
                f"val + test fractions leave too little for training: {sum(fractions):.2f} >= 0.9"
            )
        return self

    def sizes(self, rows: int) -> tuple[int, int, int]:
        """Rows in (train, val, test) for a series of `rows` rows."""
        val = round(self.val * rows) if isinstance(self.val, float) else self.val
        test = round(self.test * rows) if isinstance(self.test, float) else self.test
        return rows - val - test, val, test


Range = tuple[float, float]
IntRange = tuple[PositiveInt, PositiveInt]


class ConvSpec(_Strict):
    """A causal Conv1D front before the recurrent layers (the classic sunspots model)."""

    filters: PositiveInt = Field(description="Output channels of the convolution.")
    kernel_size: PositiveInt = Field(default=5, description="Time steps each filter sees.")


class SweepSpec(_Strict):
    """The classic learning-rate sweep: one short fit whose rate grows each epoch from `low` to
    `high` (LearningRateScheduler); the report plots loss against rate."""

    low: PositiveFloat = 1e-5
    high: PositiveFloat = 1e-1
    epochs: PositiveInt = Field(default=30, le=500)

    @model_validator(mode="after")
    def _ordered(self) -> SweepSpec:
        if self.low >= self.high:
            raise ValueError(f"`low` must be below `high`. Received: {self.low} >= {self.high}")
        return self


class TuneSpec(_Strict):
    """A hyperparameter search for one model: `trials` sampled configurations (Optuna's
    quasi-random Sobol sampler, seeded), each trained as a mapped task and scored on the
    validation split only; the best one's configuration is the model that is trained, seeded
    and tested. A range is [low, high], inclusive; a field left out keeps the model's value."""

    trials: int = Field(default=8, ge=0, le=MAX_TRIALS)
    learning_rate: Range | None = Field(default=None, description="Log-uniform.")
    units: IntRange | None = Field(default=None, description="Every recurrent layer's units.")
    dropout: Range | None = None
    window: IntRange | None = Field(default=None, description="Input time steps.")
    batch_size: IntRange | None = Field(default=None, description="Log-uniform.")
    lr_sweep: SweepSpec | None = Field(
        default=None, description="Also run the learning-rate sweep (a cheap first look)."
    )

    @model_validator(mode="after")
    def _ranges(self) -> TuneSpec:
        for name in ("learning_rate", "units", "dropout", "window", "batch_size"):
            value = getattr(self, name)
            if value is not None and value[0] > value[1]:
                raise ValueError(
                    f"`{name}` must be [low, high] with low <= high. Received: {value}"
                )
        if self.learning_rate is not None and self.learning_rate[0] <= 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: {self.learning_rate}")
        if self.dropout is not None and not (0 <= self.dropout[0] and self.dropout[1] < 1):
            raise ValueError(f"`dropout` must lie in [0, 1). Received: {self.dropout}")
        if self.trials and not self.ranges:
            raise ValueError(
                "`trials` > 0 needs at least one range to search (learning_rate, units, "
                "dropout, window or batch_size)"
            )
        return self

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """The searched fields and their [low, high], in a fixed order."""
        names = ("learning_rate", "units", "dropout", "window", "batch_size")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class ModelSpec(_Strict):
    """One recurrent model to train."""

    name: str | None = Field(default=None, description="Unique name; defaults to the type.")
    type: Literal["simple_rnn", "lstm", "gru"]
    units: list[PositiveInt] = Field(default=[64], min_length=1)
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0, lt=1)
    recurrent_dropout: float = Field(default=0.0, ge=0, lt=1)
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: PositiveFloat = 1e-3
    loss: Literal["mse", "mae", "huber"] = "mse"
    batch_size: PositiveInt = 32
    epochs: PositiveInt = 100
    patience: PositiveInt = 10
    window: PositiveInt | None = Field(
        default=None, description="Input time steps of this model; default: the spec's window."
    )
    conv: ConvSpec | None = Field(
        default=None, description="A causal Conv1D front before the recurrent layers."
    )
    dense: list[PositiveInt] = Field(
        default_factory=list,
        description="Dense (relu) layers between the recurrent layers and the output.",
    )
    base: Literal["none", "persistence", "seasonal_naive", "ridge"] = Field(
        default="none",
        description="A linear forecast the network corrects: the model's output is this base "
        "(a fixed layer over the flattened input window: the last target value, the last "
        "season, or ridge with its alpha chosen on validation, fit on the training split) plus "
        "what the recurrent layers add, which starts at zero. Trend and seasonality are then "
        "the base's job and the network learns what the base misses.",
    )
    seeds: int = Field(
        default=1,
        ge=1,
        le=MAX_SEEDS,
        description="Train this model with this many seeds (one mapped task each); the "
        "leaderboard shows each seed, their spread and the ensemble (mean of the seeds' "
        "forecasts), which is served as one .keras model.",
    )
    tune: TuneSpec | None = Field(default=None, description="A hyperparameter search.")
    jit_compile: bool | None = Field(
        default=None,
        description=(
            "XLA compilation of the train step. Empty: Keras' choice (off for these layers). "
            "`make bench` measured XLA 1.11x faster per epoch for LSTM(64) on a 2-core CPU, "
            "after about 1.4 s of compiling: worth it for long CPU runs, not for small series. "
            "On a GPU Keras keeps cuDNN-capable LSTM/GRU layers out of XLA."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError(f"must match {NAME_PATTERN.pattern}. Received: {quote(value)}")
        return value

    @property
    def member_names(self) -> list[str]:
        """The trained units of this model: its name alone, or `<name>-s<k>` for each seed."""
        if self.seeds == 1:
            return [str(self.name)]
        return [f"{self.name}{MEMBER_SEPARATOR}s{k}" for k in range(1, self.seeds + 1)]

    @property
    def trial_names(self) -> list[str]:
        """The tuning trials of this model, `<name>-t<k>`, and its sweep `<name>-lr`."""
        if self.tune is None:
            return []
        trials = [f"{self.name}{MEMBER_SEPARATOR}t{k}" for k in range(1, self.tune.trials + 1)]
        sweep = [f"{self.name}{MEMBER_SEPARATOR}lr"] if self.tune.lr_sweep else []
        return sweep + trials


class PipelineSpec(_Strict):
    """A whole pipeline: data, preparation, models and schedule."""

    name: str
    description: str = ""
    source: SourceSpec
    timestamp: str | Annotated[list[str], Field(min_length=1, max_length=6)] = Field(
        description="The timestamp column, or the columns that make it up: [year, month, day, "
        "hour] (named after those parts), or e.g. [Date, Time] with `timestamp_format`."
    )
    timestamp_format: str | None = Field(
        default=None,
        max_length=100,
        description="strftime format of the timestamp, several columns joined by one space "
        "(e.g. '%d/%m/%Y %H.%M.%S'); default: ISO 8601 or what pandas infers.",
    )
    frequency: str
    resample: ResampleSpec | None = None
    target: str
    unit: str = Field(
        default="",
        max_length=20,
        description="Unit of the target (e.g. `°C`, `MW`), shown beside every figure in its units.",
    )
    features: list[str] = Field(default_factory=list, description="Inputs; default [target].")
    calendar: list[Literal["minute", "hour", "dayofweek", "dayofmonth", "dayofyear", "month"]] = (
        Field(
            default_factory=list,
            description="Calendar inputs derived from each input step's timestamp, each as a "
            "sin and a cos column (cyclic: hour 23 lies next to hour 0).",
        )
    )
    gaps: GapSpec = GapSpec()
    split: SplitSpec = SplitSpec()
    scaler: Literal["minmax", "standard"] = "minmax"
    window: PositiveInt
    horizon: PositiveInt = 1
    season_length: PositiveInt = 1
    metric: Literal["mae", "rmse", "mape", "smape", "mase"] = "mae"
    seed: int = 42
    schedule: str | None = "@weekly"
    training_queue: str = Field(
        default="training",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Celery queue of the train tasks, so training can go to bigger or GPU "
        "workers; LocalExecutor ignores it.",
    )
    gate: GateSpec = GateSpec()
    forecast: ForecastSpec = ForecastSpec()
    intervals: Annotated[list[Fraction], Field(max_length=5)] = Field(
        default=[0.8, 0.95],
        description="Nominal coverages of the prediction intervals served with every forecast "
        "(split conformal, per step, from validation residuals); [] serves none.",
    )
    backtest: BacktestSpec | None = Field(
        default=None, description="A rolling-origin backtest of every model and baseline."
    )
    drift: DriftSpec = DriftSpec()
    tracking: TrackingSpec = TrackingSpec()
    owner: str = "freshcast"
    tags: list[str] = Field(default_factory=list)
    models: list[ModelSpec] = Field(min_length=1)
    # Where the spec was read from; set by load_spec, used to resolve relative source paths.
    spec_path: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"must match {NAME_PATTERN.pattern}. Received: {quote(value)}")
        return value

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        return _check_frequency(value)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return _check_schedule(value)

    @model_validator(mode="before")
    @classmethod
    def _default_features_and_names(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("features") and data.get("target"):
            data["features"] = [data["target"]]
        models = data.get("models")
        if isinstance(models, list):
            data["models"] = _fill_model_names(models)
        return data

    # Cross-field checks live on the field they blame, so the message names that field.
    @field_validator("target")
    @classmethod
    def _target_not_timestamp(cls, value: str, info: ValidationInfo) -> str:
        if value in _as_list(info.data.get("timestamp")):
            raise ValueError(f"the timestamp column {quote(value)} cannot be the target")
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"`features` lists a column twice: {quote(value)}")
        stamps = [c for c in _as_list(info.data.get("timestamp")) if c in value]
        # A target that is the timestamp is reported on `target` (features default to it).
        if stamps and "target" in info.data:
            raise ValueError(f"the timestamp column {quote(stamps[0])} cannot be a feature")
        derived = [c for c in value if c.startswith(CALENDAR_PREFIX)]
        if derived:
            raise ValueError(
                f"names starting with {CALENDAR_PREFIX!r} are kept for calendar inputs; rename "
                f"the column(s) {quote(derived)}"
            )
        return value

    @field_validator("timestamp")
    @classmethod
    def _timestamp_columns(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError(f"`timestamp` lists a column twice: {quote(value)}")
        return value

    @model_validator(mode="after")
    def _bases_fit(self) -> PipelineSpec:
        for i, m in enumerate(self.models):
            if m.base in ("persistence", "seasonal_naive") and self.target not in self.features:
                raise ValueError(
                    f"models.{i}.base {m.base!r} repeats past values of the target, so the "
                    f"target {quote(self.target)} must be one of the `features`; add it, or use "
                    "base: ridge"
                )
            lengths = [m.window or self.window]
            if m.tune is not None and m.tune.window is not None:
                lengths.append(m.tune.window[0])
            shortest = min(lengths)
            if m.base == "seasonal_naive" and shortest < self.season_length:
                raise ValueError(
                    f"models.{i}.base 'seasonal_naive' needs a window of at least season_length "
                    f"({self.season_length}) steps; the shortest is {shortest}"
                )
        return self

    @model_validator(mode="after")
    def _calendar_varies(self) -> PipelineSpec:
        if len(set(self.calendar)) != len(self.calendar):
            raise ValueError(f"`calendar` lists a component twice: {quote(self.calendar)}")
        rank = _grid_rank(self.grid_frequency)
        constant = [c for c in self.calendar if CALENDAR_COMPONENTS[c] < rank]
        if constant:
            raise ValueError(
                f"calendar component(s) {quote(constant)} do not vary on the "
                f"{self.grid_frequency!r} grid (every row has the same value); drop them"
            )
        return self

    @field_validator("intervals")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError(f"`intervals` lists a level twice: {quote(value)}")
        return sorted(value)

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in value]
        duplicates = sorted({n for n in names if n is not None and names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {quote(duplicates)}")
        return value

    @property
    def timestamp_columns(self) -> list[str]:
        """The source columns that make up the timestamp."""
        return _as_list(self.timestamp)

    @property
    def timestamp_name(self) -> str:
        """The name of the series' time index: the timestamp column, or its columns joined by
        '+' (`Date+Time`)."""
        return "+".join(self.timestamp_columns)

    @property
    def calendar_columns(self) -> list[str]:
        """The derived calendar inputs: `cal_<component>_sin`, `cal_<component>_cos`."""
        return [f"{CALENDAR_PREFIX}{c}_{f}" for c in self.calendar for f in ("sin", "cos")]

    @property
    def input_columns(self) -> list[str]:
        """The model's input columns, in order: the features, then the calendar inputs."""
        return [*self.features, *self.calendar_columns]

    @property
    def members(self) -> dict[str, tuple[str, int]]:
        """Every trained unit: member name -> (model name, seed); one per model and seed."""
        out = {}
        for model in self.models:
            for k, member in enumerate(model.member_names):
                out[member] = (str(model.name), self.seed + k)
        return out

    @property
    def member_names(self) -> list[str]:
        return list(self.members)

    @property
    def trials(self) -> dict[str, str]:
        """Every tuning trial and sweep: trial name -> model name."""
        return {t: str(m.name) for m in self.models for t in m.trial_names}

    @property
    def tuned(self) -> bool:
        return any(m.tune is not None for m in self.models)

    @property
    def dag_id(self) -> str:
        return f"train_{self.name}"

    @property
    def forecast_dag_id(self) -> str:
        return f"forecast_{self.name}"

    @property
    def rollback_dag_id(self) -> str:
        return f"rollback_{self.name}"

    @property
    def data_columns(self) -> list[str]:
        """The source's value columns: the features, then the target if not a feature."""
        return [*self.features, *([] if self.target in self.features else [self.target])]

    @property
    def columns(self) -> list[str]:
        """Column order of the scaled array: the inputs (features, calendar), then the target
        if not a feature."""
        return [*self.input_columns, *([] if self.target in self.features else [self.target])]

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models if m.name]

    def model(self, name: str) -> ModelSpec:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(
            f"pipeline {self.name!r} has no model {quote(name)}; it has {self.model_names}"
        )

    @property
    def grid_frequency(self) -> str:
        """Frequency of the series the models see (after resampling)."""
        return self.resample.frequency if self.resample else self.frequency


CALENDAR_PREFIX = "cal_"


def _as_list(timestamp: object) -> list[str]:
    if isinstance(timestamp, str):
        return [timestamp]
    return list(timestamp) if isinstance(timestamp, list) else []


def _grid_rank(frequency: str) -> int:
    """The rank of a pandas offset alias's unit: s=0, min=1, h=2, D/B=3, W=4, M=5, Q=6, Y=7."""
    unit = re.sub(r"^\d*", "", frequency).split("-")[0]
    return _UNIT_RANK.get(unit, _UNIT_RANK.get(unit[:1], 0))


def _fill_model_names(models: list[object]) -> list[object]:
    """Give unnamed models `<type>`, or `<type>_<n>` when a type repeats."""
    taken = {m["name"] for m in models if isinstance(m, dict) and m.get("name")}
    out = []
    for model in models:
        if isinstance(model, dict) and not model.get("name") and model.get("type"):
            n, name = 1, str(model["type"])
            while name in taken:
                n += 1
                name = f"{model['type']}_{n}"
            taken.add(name)
            model = {**model, "name": name}
        out.append(model)
    return out


def _check_schedule(value: str | None) -> str | None:
    if value is None or value in SCHEDULE_PRESETS or croniter.is_valid(value):
        return value
    raise ValueError(
        f"must be a cron expression such as '0 6 * * 1', one of {list(SCHEDULE_PRESETS)}, "
        f"or null. Received: {quote(value)}"
    )


def _check_frequency(value: str) -> str:
    if not FREQUENCY_PATTERN.match(value):
        raise ValueError(
            "must be a pandas offset alias such as 'h', '15min', 'D', 'W', 'W-SUN', 'MS', 'ME'. "
            f"Received: {quote(value)}"
        )
    return value


def clip(text: str, *, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how long it was, for an error message."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def quote(value: object) -> str:
    """The repr of a received value for an error message, at most QUOTE_LIMIT characters."""
    return clip(repr(value))


def _is_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARACTERS)


def pipelines_dir() -> Path:
    """The folder holding the pipeline specs (env FRESHCAST_PIPELINES_DIR overrides)."""
    return Path(os.environ.get(PIPELINES_DIR_ENV) or DEFAULT_PIPELINES_DIR)


def spec_files(folder: Path | None = None) -> list[Path]:
    """Every `*.yaml` / `*.yml` spec in `folder`, sorted by name."""
    folder = folder or pipelines_dir()
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate one spec file.

    Args:
        path: the YAML file; its stem is the pipeline name unless the file sets `name`.

    Returns:
        The validated spec, with `spec_path` set.

    Raises:
        SpecError: naming the file, each wrong field, what was wrong and what was received;
            also for a file over MAX_SPEC_BYTES, with anchors or aliases, nested deeper than
            MAX_SPEC_DEPTH, or whose fixed source path lies outside the allowed folders.
    """
    path = Path(path).resolve()
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: a spec must be a YAML mapping of fields (source, target, models, ...). "
            f"Received: {type(raw).__name__}"
        )
    raw.setdefault("name", path.stem)
    if raw["name"] != path.stem:
        raise SpecError(
            f"{path}: field 'name' is {quote(raw['name'])} but the file is {path.name!r}; "
            "name the file after the pipeline or drop the field"
        )
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_format_errors(path, err)) from None
    spec = spec.model_copy(update={"spec_path": path})
    if problem := source_outside_roots(spec):
        raise SpecError(problem)
    return spec


def _read_yaml(path: Path) -> object:
    """The YAML document of a spec file, refusing what could make reading it unbounded."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{path}: cannot read the spec: it is not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(_too_big(path, info.st_size))
        with path.open("rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec: {err}") from err
    if len(data) > MAX_SPEC_BYTES:  # it grew since the stat
        raise SpecError(_too_big(path, len(data)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SpecError(
            f"{path}: line {line} is not UTF-8 text (byte {data[err.start]:#04x} at byte offset "
            f"{err.start}); save the spec as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    try:
        _refuse_unbounded_yaml(path, text)
        # libyaml's loader where PyYAML has it: ten times faster, and specs are read at every
        # DAG parse.
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {clip(str(err))}") from None


def _too_big(path: Path, size: int) -> str:
    return (
        f"{path}: the spec is {size:,} bytes, over the limit of {MAX_SPEC_BYTES:,} bytes; "
        "a spec names its data in `source`, it does not hold it"
    )


def _refuse_unbounded_yaml(path: Path, text: str) -> None:
    """Raise SpecError at the first YAML anchor or alias, or at nesting past MAX_SPEC_DEPTH.

    Aliases let a 1 KB file expand to gigabytes, and libyaml's composer recurses once per level,
    so deep nesting overflows the C stack and kills the process (the DAG processor, a task).
    Scanning the events first is iterative and costs about a third of the load.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_SAFE_LOADER):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            written = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise SpecError(
                f"{path}: line {line}: {clip(written + event.anchor)}: a spec may not use YAML "
                "anchors or aliases (`&name`, `*name`, `<<: *name`), which let a small file "
                "expand without bound; write the value out"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise SpecError(
                    f"{path}: line {line}: nested more than {MAX_SPEC_DEPTH} levels deep; "
                    "a spec needs four (models > model > units > unit)"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_valid_specs(folder: Path | None = None) -> list[PipelineSpec]:
    """Every spec in `folder` that validates and alone defines its pipeline; the others are
    reported by `spec_problems`."""
    return _load_folder(folder)[0]


# The DAG ids of a pipeline `x`: train_x, forecast_x, rollback_x.
DAG_PREFIXES = ("train_", "forecast_", "rollback_")


def pipeline_of(dag_id: str) -> str | None:
    """The pipeline a DAG id belongs to (`train_x` -> `x`), or None for any other DAG id."""
    for prefix in DAG_PREFIXES:
        name = dag_id.removeprefix(prefix)
        if name != dag_id and NAME_PATTERN.match(name):
            return name
    return None


def shard_of(name: str, shards: int) -> int:
    """Which of `shards` DAG files defines pipeline `name`: a stable hash of the name, so a
    pipeline's DAGs never move between files as pipelines come and go."""
    return zlib.crc32(name.encode()) % shards


def specs_to_build(
    dag_id: str | None, *, shard: int, shards: int, folder: Path | None = None
) -> list[PipelineSpec]:
    """The specs whose DAGs DAG file `shard` (of `shards`) builds, reading no other spec file.

    Args:
        dag_id: Airflow's parsing context: in a task's process the id of that task's DAG (only
            its pipeline's spec is read), None in the dag-processor (every spec of the shard).
            A DAG id of no pipeline in this folder builds the whole shard.
        shard: this DAG file's number, 0 <= shard < shards.
        shards: how many DAG files share the specs (`shard_of`).
        folder: the specs' folder; default `pipelines_dir()`.

    Returns:
        The valid specs, in file-name order; broken ones are left out (`spec_problems` reports
        them).
    """
    if not 0 <= shard < shards:
        raise ValueError(f"`shard` must be in [0, {shards}). Received: shard={shard}")
    name = pipeline_of(dag_id) if dag_id else None
    if name is not None:  # a task's process: its spec's file, without listing the folder
        folder = folder or pipelines_dir()
        own = [p for p in (folder / f"{name}.yaml", folder / f"{name}.yml") if p.is_file()]
        if own:
            return _load_paths(own)[0] if shard_of(name, shards) == shard else []
    paths = [p for p in spec_files(folder) if shard_of(p.stem, shards) == shard]
    return _load_paths(paths)[0]


def spec_problems(folder: Path | None = None) -> list[str]:
    """The error message of every spec in `folder` that does not validate, or that defines the
    same pipeline as another file (`x.yaml` and `x.yml`)."""
    return _load_folder(folder)[1]


def _load_folder(folder: Path | None) -> tuple[list[PipelineSpec], list[str]]:
    """(specs that load, messages for the files that do not), in file-name order."""
    return _load_paths(spec_files(folder))


def _load_paths(paths: list[Path]) -> tuple[list[PipelineSpec], list[str]]:
    """(specs that load, messages for the files that do not) of these spec files."""
    by_name: dict[str, list[Path]] = {}
    for path in paths:
        by_name.setdefault(path.stem, []).append(path)  # the stem is the pipeline name
    specs, problems = [], []
    for name, paths in by_name.items():
        if len(paths) > 1:
            # Loading either would be a guess, and the next edit could silently swap them.
            first, *others = (p.resolve() for p in paths)
            problems.append(
                f"{first}: {' and '.join(map(str, others))} also defines pipeline "
                f"{quote(name)}; neither file is loaded, as it is ambiguous which is meant. "
                "Delete or rename one of them."
            )
            continue
        try:
            specs.append(load_spec(paths[0]))
        except SpecError as err:
            problems.append(str(err))
    return specs, problems


def _format_errors(path: Path, err: ValidationError) -> str:
    errors = err.errors(include_url=False)
    lines = [f"{path}: {len(errors)} problem(s) in the pipeline spec"]
    for e in errors[:MAX_LISTED_PROBLEMS]:
        field = clip(".".join(str(p) for p in e["loc"])) or "(top level)"
        received = f" Received: {quote(e.get('input'))}"
        if e["type"] == "missing" or received.strip() in e["msg"]:
            received = ""  # a validator's own message may already say what it received
        lines.append(f"  field '{field}': {e['msg']}.{received}")
    if len(errors) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(errors) - MAX_LISTED_PROBLEMS} more, not listed")
    lines.append("  Fix the field(s) above; docs/spec.md lists every field with its default.")
    return "\n".join(lines)


def source_location(spec: PipelineSpec) -> str:
    """The source as a string a user recognises in messages (path or package:resource)."""
    if spec.source.package:
        return f"{spec.source.package}:{spec.source.resource}"
    return str(resolve_source_path(spec))


def resolve_source_path(spec: PipelineSpec) -> Path:
    """The source path or glob as written (nothing expanded), relative paths taken from the
    spec file's folder."""
    assert spec.source.path is not None
    path = Path(spec.source.path)
    if not path.is_absolute() and spec.spec_path is not None:
        path = spec.spec_path.parent / path
    return path


def source_outside_roots(spec: PipelineSpec, path: Path | None = None) -> str | None:
    """Why the source may not read `path`, or None when it may.

    A source reads, symlinks resolved, under the spec's folder or under a folder listed in
    FRESHCAST_DATA_ROOTS; a spec built in code (no spec file) under `pipelines_dir()`.

    Args:
        spec: the pipeline spec.
        path: a file the source matched; default: the source path up to its first glob
            character (a file source's file, the folder a glob or landing folder reads under).

    Returns:
        None for a package source or an allowed path; otherwise the refusal, naming the spec
        file, the field and the fix.
    """
    if spec.source.path is None:
        return None
    if path is None:
        path = _fixed_part(resolve_source_path(spec))
    folder = spec.spec_path.parent if spec.spec_path is not None else pipelines_dir()
    where = spec.spec_path or f"pipeline {spec.name!r}"
    real = path.resolve()
    if real.is_relative_to(folder.resolve()):
        return None
    roots = []
    for n, entry in enumerate(os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep), start=1):
        if entry and not Path(entry).is_absolute():
            # The entry is not shown: error messages do not echo the environment.
            return (
                f"{where}: field 'source.path' cannot be checked: {DATA_ROOTS_ENV} entry {n} is "
                f"not an absolute path; list absolute folders separated by {os.pathsep!r}"
            )
        if entry:
            roots.append(Path(entry).resolve())
    if any(real.is_relative_to(root) for root in roots):
        return None
    shown = str(path) if real == path else f"{path}, which resolves to {real},"
    return (
        f"{where}: field 'source.path': {clip(shown)} lies outside the folders a source may "
        f"read from (the spec's folder and those in {DATA_ROOTS_ENV}); move the data under "
        f"{folder} or add its folder to {DATA_ROOTS_ENV}"
    )


def _fixed_part(path: Path) -> Path:
    """`path` up to its first component with a glob character: where its matches lie."""
    return Path(*itertools.takewhile(lambda part: not _is_glob(part), path.parts))
