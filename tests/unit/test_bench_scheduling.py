"""The scheduling and orchestration benchmarks' arithmetic (bench/scheduling.py,
bench/__main__.py): where a task's time went, and the goals, on hand-made task instances."""

from __future__ import annotations

import pytest

from bench.__main__ import _task_rows
from bench.scheduling import _goals, task_figures


def ti(task_id, queued, start, end, work, *, map_index=-1, upstream=(), scheduled=None):
    day = "2026-11-30T10:00:"
    return {
        "dag_id": "train_x",
        "run_id": "r",
        "task_id": task_id,
        "map_index": map_index,
        "state": "success",
        "try_number": 1,
        "hostname": "h",
        "upstream": list(upstream),
        "scheduled": f"{day}{scheduled:06.3f}+00:00" if scheduled is not None else None,
        "queued": f"{day}{queued:06.3f}+00:00",
        "start": f"{day}{start:06.3f}+00:00",
        "end": f"{day}{end:06.3f}+00:00",
        "work": work,
    }


def test_task_figures_split_wall_time_into_work_and_overhead():
    tasks = [
        ti("ingest", 0.0, 1.0, 4.0, 2.0),  # overhead 1.0, queued 1.0
        ti("validate", 5.0, 5.5, 7.5, 1.0),  # overhead 1.0, queued 0.5
        ti("train", 8.0, 11.0, 20.0, 6.0, map_index=0),  # overhead 3.0, queued 3.0
    ]
    got = task_figures(tasks)
    assert got["overhead"]["median"] == pytest.approx(1.0)
    assert got["queued"]["median"] == pytest.approx(1.0)
    assert got["overhead_by_task"] == pytest.approx({"ingest": 1.0, "train": 3.0, "validate": 1.0})
    assert got["tasks"] == 3 and got["retried"] == 0


def test_task_rows_say_how_long_each_task_waited_for_the_scheduler_and_the_executor():
    tasks = [
        ti("ingest", 0.0, 0.5, 3.0, 2.0, scheduled=0.0),
        # Ready when ingest ended at 3.0; scheduled 1.0 later, queued 0.2 after, running 0.3 after.
        ti("validate", 4.2, 4.5, 5.0, 0.4, upstream=["ingest"], scheduled=4.0),
    ]
    rows = {r["task"]: r for r in _task_rows(tasks)}
    v = rows["validate"]
    assert v["after_upstream"] == pytest.approx(1.0)
    assert v["scheduled_to_queued"] == pytest.approx(0.2)
    assert v["queued_to_start"] == pytest.approx(0.3)
    assert v["wall"] == pytest.approx(0.5)
    assert v["overhead"] == pytest.approx(0.1)
    assert rows["ingest"]["overhead"] == pytest.approx(0.5)


class Suite:
    def __init__(self):
        self.results, self.goals = {"scheduling": {}}, []

    def say(self, _):
        pass

    def goal(self, case, what, value, target, met):
        self.goals.append((what, round(value, 3), met))


def row(setup, n, runs_per_min, overhead):
    return {"setup": setup, "n": n, "runs_per_min": runs_per_min, "overhead": {"median": overhead}}


def test_goals_compare_two_workers_with_one_and_overhead_across_sizes():
    suite = Suite()
    rows = [
        row("local", 5, 2.0, 0.8),
        row("local", 10, 2.2, 1.2),  # overhead grew 1.5x: not met
        row("celery-1", 10, 1.0, 2.0),
        row("celery-2", 10, 1.7, 2.0),  # 1.7x: met
    ]
    _goals(suite, rows, (5, 10), ("local", "celery-1", "celery-2"))
    assert ("celery 2 workers / 1 worker runs/min, N=10", 1.7, True) in suite.goals
    assert ("local: task overhead median N=10 / N=5", 1.5, False) in suite.goals
    assert len(suite.goals) == 2  # one size only for the Celery setups: no growth goal
