"""The forecast history of a pipeline: every published forecast, later scored against actuals.

`<root>/<pipeline>/forecasts/history.parquet` holds one row per forecast step ever published
(long form, see HISTORY_COLUMNS). A forecast run replaces its own rows (a retry adds nothing)
and rewrites the file atomically (in a store with a URL root: one upload, which replaces the
object whole). Scoring joins the history with the actual values known now: a forecast whose
target time has an actual counts; the rest wait for their data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from freshcast import artifacts

HISTORY_COLUMNS = (
    "run_id",  # the forecast DAG run that published it
    "made_at",  # the run's cutoff: data known up to here (UTC)
    "origin",  # time of the last observed row the forecast starts from (UTC)
    "time",  # the forecast's target time (UTC)
    "step",  # 1..horizon
    "target",  # the forecast column
    "forecast",  # in the data's units
    "model_version",  # the registry version that made it
    "model_name",
)
# Optional columns: the bounds of each prediction interval served, `lower_80`, `upper_80`, ...
BOUND_PREFIXES = ("lower_", "upper_")


def bound_columns(frame: pd.DataFrame) -> list[str]:
    """The interval bound columns a forecast frame carries, in its order."""
    return [c for c in frame.columns if str(c).startswith(BOUND_PREFIXES)]


def interval_keys(frame: pd.DataFrame) -> list[str]:
    """The levels ("80", "95") whose lower and upper bounds the frame carries."""
    columns = set(frame.columns)
    return [c[len("lower_") :] for c in frame.columns if str(c).startswith("lower_")
            and f"upper_{c[len('lower_'):]}" in columns]  # fmt: skip


def forecasts_dir(pipeline: str, *, root: Path | None = None) -> Path:
    return (root or artifacts.artifact_root()) / pipeline / "forecasts"


def history_path(pipeline: str, *, root: Path | None = None) -> Path:
    return forecasts_dir(pipeline, root=root) / "history.parquet"


def read_history(path: Path) -> pd.DataFrame:
    """The history, or an empty frame with its columns before the first forecast."""
    if not artifacts.store().get(Path(path)):  # a URL root: the store's copy, fetched
        return pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})
    return pd.read_parquet(path)


def append_history(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Add one run's forecast rows, replacing any rows of that run; write atomically.

    Args:
        rows: (horizon, HISTORY_COLUMNS) rows of one run.

    Returns:
        The whole history, sorted by made_at, time and step.
    """
    missing = [c for c in HISTORY_COLUMNS if c not in rows.columns]
    if missing or len(set(rows["run_id"])) != 1:
        raise ValueError(
            f"`rows` must hold one run's forecast with columns {list(HISTORY_COLUMNS)}. "
            f"Missing: {missing}; run ids: {rows['run_id'].unique().tolist()}"
        )
    history = read_history(path)
    history = history[history["run_id"] != rows["run_id"].iloc[0]]
    kept = rows[[*HISTORY_COLUMNS, *bound_columns(rows)]]
    parts = [p for p in (history, kept) if len(p)]
    merged = pd.concat(parts, ignore_index=True) if parts else kept
    merged = merged.sort_values(["made_at", "time", "step"], kind="stable").reset_index(drop=True)
    with artifacts.atomic_path(Path(path)) as tmp:
        merged.to_parquet(tmp, index=False)
    artifacts.store().put(Path(path))  # one PUT: the store has the old or the new file whole
    return merged


def score_history(history: pd.DataFrame, actuals: pd.Series) -> pd.DataFrame:
    """Each forecast row with its actual value and error, where the actual is known.

    Args:
        history: rows with HISTORY_COLUMNS.
        actuals: the target's observed values, indexed by UTC time.

    Returns:
        history plus "actual", "error" (forecast - actual) and "abs_error"; NaN where the
        target time has no actual yet.
    """
    known = actuals.dropna()
    times = pd.to_datetime(history["time"], utc=True)
    actual = known.reindex(pd.DatetimeIndex(times)).to_numpy(dtype=np.float64)
    scored = history.assign(actual=actual)
    scored["error"] = scored["forecast"].astype(np.float64) - scored["actual"]
    scored["abs_error"] = scored["error"].abs()
    return scored


def accuracy_by_version(scored: pd.DataFrame) -> pd.DataFrame:
    """Forecast accuracy per model version over every scored step: n, MAE, RMSE, bias, and per
    interval level the live coverage (share of actuals inside the served bounds, over the steps
    that had bounds)."""
    done = scored.dropna(subset=["actual"])
    keys = interval_keys(done)
    rows = []
    for version, part in done.groupby("model_version", sort=True):
        coverage = {}
        for key in keys:
            lower, upper = part[f"lower_{key}"].astype(float), part[f"upper_{key}"].astype(float)
            has = lower.notna() & upper.notna()
            inside = (lower[has] <= part["actual"][has]) & (part["actual"][has] <= upper[has])
            coverage[f"coverage_{key}"] = float(inside.mean()) if has.any() else np.nan
        rows.append(
            {
                **coverage,
                "model_version": int(version),
                "model_name": str(part["model_name"].iloc[-1]),
                "forecasts": int(part["run_id"].nunique()),
                "scored_steps": len(part),
                "mae": float(part["abs_error"].mean()),
                "rmse": float(np.sqrt(np.mean(np.square(part["error"])))),
                "bias": float(part["error"].mean()),
                "first": str(part["made_at"].min()),
                "last": str(part["made_at"].max()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "model_version",
            "model_name",
            "forecasts",
            "scored_steps",
            "mae",
            "rmse",
            "bias",
            "first",
            "last",
            *(f"coverage_{key}" for key in keys),
        ],
    )


def drift_check(
    scored: pd.DataFrame,
    *,
    version: int,
    test_mae: float | None,
    ratio: float,
    min_steps: int,
    recent: int,
) -> dict[str, object]:
    """Has the champion's live error moved away from the error it was promoted on?

    Args:
        scored: `score_history`'s rows.
        version: the champion's registry version; only its forecasts count.
        test_mae: its MAE on its run's test split, in the data's units.
        ratio: drift when live MAE > ratio * test MAE.
        min_steps: scored forecast steps needed to judge at all.
        recent: the latest scored steps (by target time) whose MAE is the live error.

    Returns:
        {"drift": bool, "version", "live_mae", "test_mae", "ratio" (live / test), "threshold",
        "steps" (scored steps judged), "actuals_end" (latest target time judged), "reason"}.
    """
    mine = scored[(scored["model_version"] == version) & scored["actual"].notna()]
    mine = mine.sort_values(["time", "made_at"], kind="stable").tail(recent)
    out: dict[str, object] = {
        "drift": False,
        "version": int(version),
        "test_mae": test_mae,
        "threshold": ratio,
        "steps": len(mine),
        "live_mae": float(mine["abs_error"].mean()) if len(mine) else None,
        "ratio": None,
        "actuals_end": str(pd.Timestamp(mine["time"].max()).isoformat()) if len(mine) else None,
    }
    if test_mae is None or not np.isfinite(test_mae) or test_mae <= 0:
        out["reason"] = f"v{version} has no positive test MAE to compare with"
        return out
    if len(mine) < min_steps:
        out["reason"] = (
            f"v{version} has {len(mine)} scored forecast step(s), fewer than drift.min_steps "
            f"({min_steps}): too few to judge"
        )
        return out
    out["ratio"] = float(out["live_mae"]) / test_mae
    out["drift"] = out["ratio"] > ratio
    verb = "exceeds" if out["drift"] else "is within"
    out["reason"] = (
        f"v{version}'s live MAE over its latest {len(mine)} scored steps is {out['live_mae']:.4g}, "
        f"{out['ratio']:.2f} x its test MAE {test_mae:.4g}: {verb} the drift ratio {ratio:g}"
    )
    return out


def accuracy_over_time(scored: pd.DataFrame) -> pd.DataFrame:
    """MAE of each forecast run whose steps are (partly) scored, in order of making."""
    done = scored.dropna(subset=["actual"])
    grouped = done.groupby(["made_at", "run_id", "model_version"], sort=True)["abs_error"]
    return grouped.agg(mae="mean", scored_steps="count").reset_index()
