from __future__ import annotations

import numpy as np
import pytest

from freshcast.report import best_epochs
from freshcast.report.figures import forecast_figure, leaderboard_figure, loss_figure
from tests.unit.report.inputs import (
    banded_predictions,
    bands_of,
    ensemble_page,
    intervals_page,
    loss_histories,
    step_predictions,
)


def test_loss_curves_mark_the_best_epoch():
    fig = loss_figure(loss_histories(), best_epochs(loss_histories()))
    gru, lstm = fig.axes
    assert "best epoch 3" in gru.get_legend_handles_labels()[1]
    assert "best epoch 2" in lstm.get_legend_handles_labels()[1]
    vertical = [line for line in gru.lines if list(line.get_xdata()) == [3, 3]]
    assert len(vertical) == 1 and vertical[0].get_linestyle() == ":"
    marker = next(line for line in gru.lines if line.get_label() == "best epoch 3")
    assert list(marker.get_ydata()) == [0.6]  # on the validation curve
    assert gru.get_yscale() == "log" and lstm.get_yscale() == "linear"


def test_a_long_test_split_gets_a_zoomed_panel_of_its_last_steps():
    predictions = step_predictions(samples=12)  # 12 step-1 points
    one = forecast_figure(predictions, ["gru"], target="temp", unit="°C", zoom=12)
    two = forecast_figure(predictions, ["gru"], target="temp", unit="°C", zoom=10)
    assert len(one.axes) == 1 and len(two.axes) == 2
    whole, last = two.axes
    assert len(whole.lines[0].get_xdata()) == 12 and len(last.lines[0].get_xdata()) == 10
    np.testing.assert_array_equal(last.lines[0].get_ydata(), np.arange(2, 12))  # the actuals
    assert last.get_title() == "last 10 steps"
    assert whole.get_ylabel() == "temp (°C)" and last.get_ylabel() == "temp (°C)"
    assert [t.get_text() for t in two.legends[0].get_texts()] == ["actual", "gru"]


def test_leaderboard_chart_names_seeds_and_alpha_and_labels_the_spread(tmp_path):
    _, summary, _ = ensemble_page(tmp_path)
    fig = leaderboard_figure(summary["leaderboard"], "mae", "°C", 1)
    (ax,) = fig.axes
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[:2] == ["lstm", "lstm-s2 (seed 43)"] and "ridge (alpha 10)" in names
    assert " 1.40 ± 0.05" in [t.get_text() for t in ax.texts]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["model", "ensemble", "seed", "baseline"]


def test_the_test_forecast_figure_shades_the_best_models_intervals(tmp_path):
    summary, page, figures = intervals_page(tmp_path)
    assert summary["bands"] == {"name": "gru", "levels": ["80", "95"]}
    assert "Shaded: the 80% and 95% prediction interval(s) of gru, lighter for wider." in page
    whole, last = figures["forecast.png"].axes  # zoom=10 of 12 steps: two panels
    for ax in (whole, last):
        bands = bands_of(ax)
        assert set(bands) == {"80% interval of gru", "95% interval of gru"}
        assert bands["95% interval of gru"].get_alpha() < bands["80% interval of gru"].get_alpha()
    # The band's edges are gru's step-1 forecast -+ 2 (95%).
    gru = summary["bands"]["name"]
    frame = banded_predictions()
    step1 = frame[(frame["name"] == gru) & (frame["step"] == 1)]
    band = bands_of(whole)["95% interval of gru"]
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert ys.min() == pytest.approx(step1["lower_95"].min())
    assert ys.max() == pytest.approx(step1["upper_95"].max())
    legend = [t.get_text() for t in figures["forecast.png"].legends[0].get_texts()]
    assert "80% interval of gru" in legend and "95% interval of gru" in legend


def test_no_bands_without_bound_columns_or_finite_bounds(tmp_path):
    summary, page, figures = intervals_page(tmp_path, predictions=step_predictions())
    assert summary["bands"] is None and "Shaded:" not in page
    assert all(not bands_of(ax) for ax in figures["forecast.png"].axes)
    # The best model's bounds all NaN (e.g. a diverged model): nothing shaded either.
    frame = banded_predictions()
    frame.loc[frame["name"] == "gru", ["lower_80", "upper_80", "lower_95", "upper_95"]] = np.nan
    summary, _, _ = intervals_page(tmp_path, predictions=frame)
    assert summary["bands"] is None
