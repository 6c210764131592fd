from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import freshcast.report
from freshcast import evaluation as ev
from freshcast.report import write_report

RUN_ID = "manual__2025-01-01T00:00<&>"
NAMES = ("lstm", "gru", "persistence", "ridge")


def _leaderboard():
    scores = {
        "lstm": {
            "kind": "model",
            "mae": 1.23456,
            "rmse": 2.0,
            "mape": 3.0,
            "smape": 4.0,
            "mase": 0.81234,
        },
        "gru": {"kind": "model", "mae": 1.1, "rmse": 2.0, "mape": 3.0, "smape": 4.0, "mase": 0.7},
        "persistence": {
            "kind": "baseline",
            "mae": 1.5,
            "rmse": 2.5,
            "mape": 3.5,
            "smape": 4.5,
            "mase": 1.0,
        },
        "ridge": {
            "kind": "baseline",
            "mae": 1.4,
            "rmse": 2.4,
            "mape": math.nan,
            "smape": 4.4,
            "mase": 0.95,
        },
    }
    return ev.leaderboard(scores, metric="mae")


def _predictions(horizon=2, samples=12):
    times = pd.date_range("2025-01-01", periods=samples, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    actual = np.sin(np.arange(samples + horizon))
    frames = []
    for name in NAMES:
        for step in range(1, horizon + 1):
            y = actual[step - 1 : step - 1 + samples]
            frames.append(
                pd.DataFrame(
                    {
                        "time": times + pd.Timedelta(hours=step - 1),
                        "step": step,
                        "name": name,
                        "actual": y,
                        "prediction": y + rng.normal(0, 0.1, samples),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _histories():
    return {
        "lstm": {"loss": [1.0, 0.5, 0.3], "val_loss": [1.2, 0.7, 0.6]},
        "gru": {"loss": [0.9, -0.1], "val_loss": [1.0, 0.8]},  # not all positive: linear axis
    }


@pytest.fixture
def written(tmp_path):
    paths = write_report(
        tmp_path,
        pipeline="demo",
        run_id=RUN_ID,
        metric="mae",
        leaderboard=_leaderboard(),
        histories=_histories(),
        predictions=_predictions(),
    )
    return tmp_path, paths


def test_writes_four_files(written):
    out_dir, paths = written
    assert set(paths) == {"html", "loss", "forecast", "leaderboard"}
    assert {p.name for p in out_dir.iterdir()} == {
        "index.html",
        "loss.png",
        "forecast.png",
        "leaderboard.png",
    }  # and no temp file left behind
    for key in ("loss", "forecast", "leaderboard"):
        assert paths[key].parent == out_dir
        assert paths[key].read_bytes().startswith(b"\x89PNG")


def test_html_lists_entries_escapes_run_id_and_references_images(written):
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    for name in NAMES:
        assert f"<td>{name}</td>" in page
    assert "manual__2025-01-01T00:00&lt;&amp;&gt;" in page
    assert RUN_ID not in page
    for image in ("loss.png", "forecast.png", "leaderboard.png"):
        assert f'src="{image}"' in page
    assert "<td>1.235</td>" in page and "<td>0.8123</td>" in page  # 4 significant digits
    assert '<tr class="best"><td>1</td><td>gru</td>' in page
    assert page.count('class="best"') == 1
    assert "MASE &lt; 1" in page


def test_rewrite_replaces_files_and_leaves_no_temp_files(written):
    out_dir, _ = written
    write_report(
        out_dir,
        pipeline="demo",
        run_id="second",
        metric="mase",
        leaderboard=_leaderboard(),
        histories={},
        predictions=_predictions(horizon=1),
        top=1,
    )
    assert len(list(out_dir.iterdir())) == 4
    assert "second" in (out_dir / "index.html").read_text(encoding="utf-8")


def test_errors(tmp_path):
    kwargs = dict(pipeline="demo", run_id="r", leaderboard=_leaderboard(), histories={})
    with pytest.raises(ValueError, match=r"lacks columns \['actual'\]"):
        write_report(
            tmp_path, metric="mae", predictions=_predictions().drop(columns="actual"), **kwargs
        )
    with pytest.raises(ValueError, match="Received: metric='r2'"):
        write_report(tmp_path, metric="r2", predictions=_predictions(), **kwargs)
    with pytest.raises(ValueError, match="Received: top=0"):
        write_report(tmp_path, metric="mae", predictions=_predictions(), top=0, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_does_not_import_tensorflow_or_pyplot():
    # A fresh interpreter: other tests in this session may have loaded them already.
    code = (
        "import sys, freshcast.report, freshcast.evaluation; "
        "loaded = {'tensorflow', 'keras', 'matplotlib.pyplot'} & set(sys.modules); "
        "sys.exit(str(loaded) if loaded else 0)"
    )
    include = str(Path(freshcast.report.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": include}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
