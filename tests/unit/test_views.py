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


def test_links_quote_run_ids_and_keep_airflows_root():
    links = views.Links(root="", plugin="/freshcast")
    run_id = "manual__2024-01-01T00:00:00+00:00"
    assert links.report("train_x", run_id) == (
        "/dags/train_x/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00/plugin/freshcast-report"
    )
    assert links.files("x", "train", "a/b", "report") == "/freshcast/files/x/train/a%2Fb/report/"
    assert LINKS.overview() == "/airflow/plugin/forecasts"
    assert Path(LINKS.api()).name == "v2"
