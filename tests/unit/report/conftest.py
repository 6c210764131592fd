from __future__ import annotations

import pytest

from tests.unit.report.inputs import write_run_report


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("report")
    return out_dir, write_run_report(out_dir)
