"""What the tests of the steps share: a tiny pipeline's spec with its artifacts in tmp_path."""

from __future__ import annotations

import pytest

from tests.helpers import write_tiny_pipeline


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return write_tiny_pipeline(tmp_path / "pipelines")
