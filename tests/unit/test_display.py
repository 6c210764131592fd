"""How figures are shown: rounded to what the data supports, with their units."""

from __future__ import annotations

import math

import numpy as np
import pytest

from freshcast import display


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([12.0, 13.0, -4.0], 0),  # whole numbers
        ([12.3, 8.1, np.nan, np.inf], 1),  # 0.1-degree readings; NaN and inf ignored
        ([0.25, 1.5], 2),
        ([1 / 3], display.MAX_DECIMALS),  # float noise is capped
        ([], 2),  # nothing to go by
    ],
)
def test_data_decimals_is_the_resolution_the_data_is_recorded_with(values, expected):
    assert display.data_decimals(values) == expected


def test_an_error_in_the_datas_units_shows_one_decimal_more_than_the_data():
    assert display.metric_value("mae", 2.16734, decimals=1, unit="°C") == "2.17 °C"
    assert display.metric_value("rmse", 2.7, decimals=0, unit="MW") == "2.7 MW"
    assert display.metric_value("mase", 0.96712, decimals=1, unit="°C") == "0.967"  # a ratio
    assert display.metric_value("smape", 12.345, decimals=1, unit="°C") == "12.3%"
    assert display.metric_value("mae", None, decimals=1, unit="°C") == "n/a"
    assert display.metric_value("mae", math.nan, decimals=1) == "n/a"


def test_a_figure_shows_at_most_four_significant_digits():
    assert display.number(1.135927, 6) == "1.136"
    assert display.number(0.0123456, 6) == "0.01235"
    assert display.number(12345.67, 1) == "12,346"
    assert display.number(2.5, 3, significant=None) == "2.500"
    assert display.number(-0.0001, 2) == "0.00"  # no "-0.00"
    assert display.number("abc", 2) == "n/a"


def test_labels_carry_units():
    assert display.metric_label("mae", "°C") == "MAE (°C)"
    assert display.metric_label("mase", "°C") == "MASE"
    assert display.metric_label("smape") == "sMAPE (%)"
    assert display.metric_label("bias", "kW") == "bias (kW)"
    assert display.column_label("temp_max", "°C") == "temp_max (°C)"
    assert display.column_label("load") == "load"
    assert display.with_unit("2.17", "°C") == "2.17 °C"
    assert display.with_unit("n/a", "°C") == "n/a"


def test_skill_is_the_percent_error_reduction_against_the_reference():
    assert display.skill(2.0, 2.5) == pytest.approx(20.0)
    assert display.skill(3.0, 2.0) == pytest.approx(-50.0)  # worse than the reference
    assert math.isnan(display.skill(1.0, 0.0))
    assert math.isnan(display.skill(None, 2.0))


def test_table_aligns_text_left_and_figures_right():
    text = display.table([["lstm", "2.17"], ["persistence", "12.25"]], ["name", "MAE (°C)"])
    assert text.splitlines() == [
        "  name         MAE (°C)",
        "  lstm             2.17",
        "  persistence     12.25",
    ]


def test_a_time_reads_as_its_date_at_midnight_else_date_and_clock():
    assert display.when("2016-01-01T00:00:00+00:00") == "2016-01-01"
    assert display.when("2016-01-02T06:30:00+00:00") == "2016-01-02 06:30"
    assert display.when("2016-01-03 00:00:00+00:00") == "2016-01-03"
