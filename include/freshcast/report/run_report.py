"""`write_report` writes the run report's folder: the figures, `summary.json`, and
`index.html` last, so a folder with an `index.html` is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freshcast.artifacts import write_bytes, write_json
from freshcast.report import markup
from freshcast.report.figures import (
    forecast_figure,
    leaderboard_figure,
    loss_figure,
    save,
    steps_figure,
    sweep_figure,
)
from freshcast.report.run_page import render_run
from freshcast.report.run_records import SWEEP_FILE
from freshcast.report.run_summary import FILES, ZOOM, run_summary


def write_report(out_dir: Path, **fields: Any) -> dict[str, Path]:
    """Draw the plots, store `summary.json` and write `index.html` into `out_dir`, atomically.

    Args:
        out_dir: the report's folder.
        fields: the keyword arguments of `run_summary` (pipeline, run_id, metric, leaderboard,
            histories, predictions, target, unit, decimals, top, decision, promoted, zoom,
            tuning, sweeps, explain, backtest).

    Returns:
        {"html", "summary", "loss", "forecast", "leaderboard"}, "steps" (horizon > 1 only) and
        "sweep_<model>" per learning-rate sweep -> path of each written file.

    Raises:
        ValueError: as `run_summary`. Nothing is written then.
    """
    out_dir = Path(out_dir)
    summary = run_summary(**fields)
    target, unit = summary["target"], summary["unit"]
    paths = {key: out_dir / FILES[key] for key in (*summary["images"], "summary", "html")}
    sweeps = {f"sweep_{s['model']}": out_dir / s["image"] for s in summary["sweeps"]}
    # A rewrite leaves no stale plot behind: no per-step plot for horizon 1, no old sweeps.
    if "steps" not in paths:
        (out_dir / FILES["steps"]).unlink(missing_ok=True)
    if out_dir.is_dir():
        for old in out_dir.glob(SWEEP_FILE.format("*")):
            if old not in sweeps.values():
                old.unlink(missing_ok=True)
    save(loss_figure(fields["histories"], summary["training"]), paths["loss"])
    forecast = forecast_figure(
        fields["predictions"],
        summary["shown"],
        target=target,
        unit=unit,
        zoom=fields.get("zoom", ZOOM),
        bands=summary["bands"],
    )
    save(forecast, paths["forecast"])
    board = leaderboard_figure(summary["leaderboard"], summary["metric"], unit, summary["decimals"])
    save(board, paths["leaderboard"])
    if "steps" in paths:
        save(steps_figure(summary["per_step"], summary["leaderboard"], unit), paths["steps"])
    for sweep, path in zip(summary["sweeps"], sweeps.values(), strict=True):
        save(sweep_figure(sweep), path)
    write_json(paths["summary"], summary)
    # The page goes last: a folder whose index.html exists has all its images.
    page = markup.page_head(summary["title"]) + render_run(summary) + markup.PAGE_END
    write_bytes(paths["html"], page.encode("utf-8"))
    return {**paths, **sweeps}
