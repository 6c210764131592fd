"""What the steps share: the conf check."""

from __future__ import annotations

import pytest

from freshcast import steps


def test_unknown_conf_keys_are_refused_with_the_known_ones():
    from freshcast.errors import BadInputError

    steps.run_folder.check_conf(
        {"epochs": 2, "force": True}, known=["epochs", "models", "force"], dag_id="d"
    )
    steps.run_folder.check_conf(None, known=[], dag_id="forecast_x")
    with pytest.raises(BadInputError) as err:
        steps.run_folder.check_conf(
            {"epoch": 2}, known=["epochs", "models", "force"], dag_id="train_x"
        )
    assert str(err.value).startswith(
        "train_x: unknown conf key(s) 'epoch' (did you mean 'epochs'?); it takes epochs, force, "
        "models."
    )
    with pytest.raises(BadInputError, match="it takes no conf at all"):
        steps.run_folder.check_conf({"x": 1}, known=[], dag_id="forecast_x")
