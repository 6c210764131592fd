"""The pages' HTML from hand-made page data: every string a user controls shown as text,
links that keep Airflow's root and quote run ids."""

from __future__ import annotations

from pathlib import Path

from freshcast import views

LINKS = views.Links(root="/airflow", plugin="/airflow/freshcast")


HOSTILE = "<script>alert(1)</script>"


def hostile_detail() -> dict:
    """A pipeline page's data where every name a user controls holds markup."""
    run = {
        "run_id": f"manual__{HOSTILE}",
        "state": "success",
        "metric": "mae",
        "unit": HOSTILE,
        "decimals": 1,
        "kinds": {HOSTILE: "model", "persistence": "baseline"},
        "scores": {HOSTILE: 1.0, "persistence": 2.0},
        "candidate": HOSTILE,
        "champion_version": None,
        "champion_score": None,
        "promoted": 1,
        "verdict": HOSTILE,
        "written_at": "2024-01-01",
    }
    champion = {
        "version": 1,
        "since": "2024-01-01T00:00:00+00:00",
        "model": HOSTILE,
        "metric": "mae",
        "score": 1.0,
        "unit": HOSTILE,
        "decimals": 1,
    }
    return {
        "name": "tiny",
        "description": HOSTILE,
        "target": HOSTILE,
        "unit": HOSTILE,
        "metric": "mae",
        "dag_ids": ("train_tiny", "forecast_tiny", "rollback_tiny"),
        "champion": champion,
        "last_run": {**run, "outcome": HOSTILE, "note": HOSTILE},
        "next_run": None,
        "paused": False,
        "forecast": {
            "run_id": HOSTILE,
            "version": 1,
            "origin": "2024-01-01",
            "rows": [{"time": HOSTILE, "step": 1, "forecast": 1.0}],
            "accuracy": [],
            "scored": True,
            "unit": HOSTILE,
            "decimals": 1,
        },
        "runs": [run],
        "registry": {
            "champion": 1,
            "versions": [
                {
                    "version": 1,
                    "model": HOSTILE,
                    "type": HOSTILE,
                    "metric": "mae",
                    "score": 1.0,
                    "run_id": HOSTILE,
                    "data_start": HOSTILE,
                    "data_end": HOSTILE,
                    "compared_to": None,
                    "git_commit": HOSTILE,
                    "serving": True,
                    "unit": HOSTILE,
                    "decimals": 1,
                }
            ],
            "events": [
                {
                    "seq": 1,
                    "at": HOSTILE,
                    "kind": "promoted",
                    "run_id": HOSTILE,
                    "what": HOSTILE,
                    "reasons": [HOSTILE],
                }
            ],
        },
        "forecasts": [
            {
                "time": HOSTILE,
                "step": 1,
                "forecast": 1.0,
                "actual": None,
                "version": 1,
                "made_at": HOSTILE,
                "run_id": HOSTILE,
            }
        ],
    }


def test_every_name_a_user_controls_is_shown_as_text():
    detail = hostile_detail()
    pages_html = [
        views.render_overview([detail], LINKS),
        views.render_pipeline(detail, LINKS, can_rollback=True, can_see_forecasts=True),
        views.render_message(HOSTILE, HOSTILE, link=(HOSTILE, HOSTILE)),
    ]
    for html in pages_html:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_new_fields_a_user_controls_are_shown_as_text_too():
    """A trigger, a drift reason and interval keys from the store are escaped like the rest."""
    detail = detail_with_intervals()
    detail["last_run"]["trigger"] = HOSTILE
    detail["runs"][0]["trigger"] = HOSTILE
    detail["forecast"]["drift"] = {"drift": True, "ratio": None, "reason": HOSTILE}
    detail["registry"]["events"][0]["trigger"] = HOSTILE
    detail["registry"]["events"][1]["reasons"] = [HOSTILE]
    for html in (
        views.render_overview([detail], LINKS),
        views.render_pipeline(detail, LINKS, can_rollback=False, can_see_forecasts=True),
    ):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def detail_with_intervals() -> dict:
    """A pipeline page's data with the new figures: v2 served 80% and 95% intervals; the last
    run was started by a drift and decided on a 3-fold backtest; the newest forecast run
    found no drift."""
    detail = hostile_detail()
    for key in ("description", "target", "unit"):
        detail[key] = "kW" if key == "unit" else "demo"
    detail["champion"] = {**detail["champion"], "model": "gru", "unit": "kW"}
    run = {
        **detail["runs"][0],
        "run_id": "run2",
        "unit": "kW",
        "kinds": {"gru": "model", "persistence": "baseline"},
        "scores": {"gru": 1.0, "persistence": 2.0},
        "candidate": "gru",
        "verdict": "gru promoted to v2: backtest mean mae 1.05 kW",
        "trigger": "drift",
        "basis": "backtest",
        "intervals": {
            "80": {"level": 0.8, "coverage": 0.8125, "width": 3.07},
            "95": {"level": 0.95, "coverage": 0.9583, "width": 5.5},
        },
        "backtest_mean": 1.05,
        "backtest_folds": 3,
    }
    old = {**run, "run_id": "run1", "trigger": None, "basis": "test", "intervals": {}}
    old.update(backtest_mean=None, backtest_folds=0, verdict="gru promoted to v1")
    detail["runs"] = [old, run]  # oldest first
    detail["last_run"] = {**run, "outcome": run["verdict"], "note": None}
    detail["forecast"] = {
        "run_id": "f9",
        "version": 2,
        "origin": "2024-01-01",
        "rows": [
            {
                "time": "2024-01-02",
                "step": 1,
                "forecast": 10.123,
                "lower_80": 9.1,
                "upper_80": 11.2,
                "lower_95": 8.0,
                "upper_95": 12.4,
            },
        ],
        "levels": ["80", "95"],
        "accuracy": [
            {"model_version": 1, "mae": 0.5, "scored_steps": 4, "coverage_80": None},
            {"model_version": 2, "mae": 0.61, "scored_steps": 6, "coverage_80": 0.8333},
        ],
        "scored": True,
        "drift": {
            "drift": False,
            "version": 2,
            "live_mae": 0.61,
            "test_mae": 0.5,
            "ratio": 1.22,
            "threshold": 1.5,
            "steps": 6,
            "reason": "v2's live MAE is 1.22 x its test MAE",
        },
        "unit": "kW",
        "decimals": 1,
    }
    detail["registry"]["events"] = [
        {"seq": 3, "at": "2024-01-03", "kind": "promoted", "run_id": "run2",
         "what": "gru → v2", "reasons": ["gru beats champion v1"], "trigger": "drift"},
        {"seq": 2, "at": "2024-01-02", "kind": "drift", "run_id": "f8",
         "what": "v1 drifted: live MAE 1.60 × test MAE",
         "reasons": ["v1's live MAE exceeds the drift ratio 1.5"]},
        {"seq": 1, "at": "2024-01-01", "kind": "promoted", "run_id": "run1", "what": "gru → v1",
         "reasons": []},  # recorded before triggers: no "trigger"
    ]  # fmt: skip
    detail["forecasts"] = [
        {"time": "2024-01-02", "step": 1, "forecast": 10.123, "actual": None, "version": 2,
         "made_at": "2024-01-01", "run_id": "f9", "bounds": {"80": [9.1, 11.2]}},
        {"time": "2024-01-01", "step": 1, "forecast": 9.0, "actual": 9.5, "version": 1,
         "made_at": "2023-12-31", "run_id": "f1"},  # an old forecast: no bounds
    ]  # fmt: skip
    return detail


def test_the_pipeline_page_shows_intervals_backtest_triggers_and_drift():
    detail = detail_with_intervals()
    html = views.render_pipeline(detail, LINKS, can_rollback=False, can_see_forecasts=True)
    now = html[html.index("<h2>Now</h2>") : html.index("<h2>Leaderboard over runs")]
    assert "; started by drift (the champion&#x27;s live error drifted past its drift ratio))" in (
        now
    )
    # The latest forecast with its narrowest interval; live coverage per version.
    assert "2024-01-02: 10.12 kW (80%: 9.10 to 11.20 kW)" in now
    assert "v1: MAE 0.50 kW over 4 forecast steps; " in now  # v1 served no interval
    assert "v2: MAE 0.61 kW over 6 forecast steps, 80% interval held 83.3%" in now
    assert (
        '<th class="left">Drift check</th><td class="left">Drift check: v2&#x27;s live MAE '
        "0.61 kW over its latest 6 scored steps is 1.22 × its test MAE 0.50 kW: within the "
        "drift ratio 1.5.</td>"
    ) in now

    runs = html[html.index("<h2>Leaderboard over runs") : html.index("<h2>Registry: versions")]
    assert (
        "<th>candidate's 80% interval</th><th>candidate's 95% interval</th>"
        "<th>candidate's backtest mean (mae)</th><th>decision</th>"
    ) in runs
    assert "<td>81.2% covered, 3.07 kW wide</td><td>95.8% covered, 5.50 kW wide</td>" in runs
    assert "<td>1.05 kW over 3 folds</td>" in runs
    assert '(on the backtest)</span><br><span class="muted">started by drift (' in runs
    assert "<td></td><td></td><td></td>" in runs  # run1: none of them

    history = html[html.index("<h2>Registry: history") : html.index("<h2>Forecasts")]
    assert '<th class="left">started by</th>' in history
    assert '<span class="bad">drift</span>' in history
    assert "v1 drifted: live MAE 1.60 × test MAE" in history
    assert 'href="/airflow/dags/forecast_tiny/runs/f8/plugin/freshcast-report"' in history
    assert 'href="/airflow/dags/train_tiny/runs/run2/plugin/freshcast-report"' in history
    assert '<td class="left">drift (the champion&#x27;s live error' in history

    forecasts = html[html.index("<h2>Forecasts (newest first)") :]
    assert "<th>forecast</th><th>80% interval</th><th>actual</th>" in forecasts
    assert "<td>10.12 kW</td><td>9.10 to 11.20 kW</td><td>not yet</td>" in forecasts
    assert "<td>9.00 kW</td><td></td><td>9.50 kW</td>" in forecasts  # no bounds: blank


def test_the_overview_card_shows_the_trigger_coverage_and_a_drift():
    detail = detail_with_intervals()
    detail["forecast"]["drift"] = {**detail["forecast"]["drift"], "drift": True, "ratio": 1.6}
    html = views.render_overview([detail], LINKS)
    assert '<span class="muted">started by drift (' in html
    assert "80% interval held 83.3%" in html
    assert '<span class="bad">Drift check: v2' in html and "a retraining is signalled" in html


def test_pages_without_the_new_fields_render_as_before():
    html = views.render_pipeline(
        hostile_detail(), LINKS, can_rollback=False, can_see_forecasts=True
    )
    assert "interval" not in html and "Drift check" not in html and "started by drift" not in html
    assert "backtest" not in html


def test_links_quote_run_ids_and_keep_airflows_root():
    links = views.Links(root="", plugin="/freshcast")
    run_id = "manual__2024-01-01T00:00:00+00:00"
    assert links.report("train_x", run_id) == (
        "/dags/train_x/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00/plugin/freshcast-report"
    )
    assert links.files("x", "train", "a/b", "report") == "/freshcast/files/x/train/a%2Fb/report/"
    assert LINKS.overview() == "/airflow/plugin/forecasts"
    assert Path(LINKS.api()).name == "v2"
