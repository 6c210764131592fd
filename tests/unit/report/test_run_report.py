from __future__ import annotations

import json
from pathlib import Path

import pytest

from freshcast import report
from freshcast.report import page_head, render_run, run_report, write_report
from tests.unit.report.inputs import RUN_ID, leaderboard_rows, step_predictions, write_run_report


def test_writes_the_files_and_summary_index_last(written):
    out_dir, paths = written
    assert set(paths) == {"html", "summary", "loss", "forecast", "leaderboard", "steps"}
    assert {p.name for p in out_dir.iterdir()} == {
        "index.html",
        "summary.json",
        "loss.png",
        "forecast.png",
        "leaderboard.png",
        "steps.png",
    }  # and no temp file left behind
    for key in ("loss", "forecast", "leaderboard", "steps"):
        assert paths[key].parent == out_dir
        assert paths[key].read_bytes().startswith(b"\x89PNG")


def test_index_is_written_last(tmp_path, monkeypatch):
    order = []

    def spy(name, where):  # `where`: the position of the path among the arguments
        real = getattr(run_report, name)

        def record(*args):
            order.append(Path(args[where]).name)
            return real(*args)

        return record

    for name, where in (("save", 1), ("write_json", 0), ("write_bytes", 0)):
        monkeypatch.setattr(run_report, name, spy(name, where))
    write_run_report(tmp_path, decision=None)
    assert order[-2:] == ["summary.json", "index.html"]
    assert sorted(order[:-2]) == ["forecast.png", "leaderboard.png", "loss.png", "steps.png"]


def test_summary_is_strict_json_and_renders_the_same_page(written):
    _, paths = written
    text = paths["summary"].read_text(encoding="utf-8")

    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    summary = json.loads(text, parse_constant=refuse)
    assert set(summary) == {
        "title", "pipeline", "run_id", "target", "unit", "decimals", "metric", "horizon",
        "test_points", "zoom", "shown", "leaderboard", "best", "reference", "flags",
        "per_step", "per_step_rmse", "training", "gate", "tuning", "sweeps", "intervals",
        "bands", "backtest", "explain", "images",
    }  # fmt: skip
    assert summary["title"] == f"demo: run {RUN_ID}"
    assert (summary["horizon"], summary["test_points"], summary["zoom"]) == (2, 12, 10)
    assert summary["shown"] == ["gru", "ridge", "lstm"]
    assert summary["per_step"]["gru"] == pytest.approx([0.5, 1.0])
    # Errors of +-0.5 and +-1.0: the RMSE per step equals the MAE.
    assert summary["per_step_rmse"]["gru"] == pytest.approx([0.5, 1.0])
    assert summary["tuning"] is None and summary["sweeps"] == []
    # Without intervals or a backtest in the leaderboard: none of their sections.
    assert summary["intervals"] == [] and summary["bands"] is None and summary["backtest"] is None
    assert summary["explain"] == report.EXPLAIN
    assert summary["training"]["gru"]["best_epoch"] == 3
    assert summary["images"] == {
        "forecast": "forecast.png",
        "leaderboard": "leaderboard.png",
        "loss": "loss.png",
        "steps": "steps.png",
    }
    # JSON sorts the keys of per_step and training; the page keeps the leaderboard's order.
    page = paths["html"].read_text(encoding="utf-8")
    assert page == page_head(summary["title"]) + render_run(summary) + "</body>\n</html>\n"


def test_files_prefixes_every_image_and_horizon_one_has_no_step_section(tmp_path):
    paths = write_run_report(tmp_path, predictions=step_predictions(horizon=1), decision=None)
    assert "steps" not in paths
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["per_step"] == {} and "steps" not in summary["images"]
    fragment = render_run(summary, files="/freshcast/runs/demo/r1/")
    assert fragment.count('src="/freshcast/runs/demo/r1/') == 3
    assert "Error per forecast step" not in fragment and "Gate:" not in fragment
    assert "<html" not in fragment and "<body" not in fragment


def test_rewrite_replaces_files_and_leaves_no_stale_or_temp_files(tmp_path):
    write_run_report(tmp_path)
    assert (tmp_path / "steps.png").exists()
    write_run_report(
        tmp_path, run_id="second", predictions=step_predictions(horizon=1), histories={}, top=1
    )
    assert {p.name for p in tmp_path.iterdir()} == {
        "index.html",
        "summary.json",
        "loss.png",
        "forecast.png",
        "leaderboard.png",
    }
    assert "second" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_errors(tmp_path):
    kwargs = dict(pipeline="demo", run_id="r", leaderboard=leaderboard_rows(), histories={})
    with pytest.raises(ValueError, match=r"lacks columns \['actual'\]"):
        write_report(
            tmp_path, metric="mae", predictions=step_predictions().drop(columns="actual"), **kwargs
        )
    with pytest.raises(ValueError, match="Received: metric='r2'"):
        write_report(tmp_path, metric="r2", predictions=step_predictions(), **kwargs)
    for bad in ({"top": 0}, {"zoom": 0}, {"decimals": -1}):
        name, value = next(iter(bad.items()))
        with pytest.raises(ValueError, match=f"Received: {name}={value}"):
            write_report(tmp_path, metric="mae", predictions=step_predictions(), **bad, **kwargs)
    assert list(tmp_path.iterdir()) == []
