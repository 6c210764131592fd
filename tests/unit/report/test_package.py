from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import freshcast.report


def test_does_not_import_tensorflow_or_pyplot():
    # A fresh interpreter: other tests in this session may have loaded them already.
    code = (
        "import sys, freshcast.report, freshcast.evaluation; "
        "loaded = {'tensorflow', 'keras', 'matplotlib.pyplot'} & set(sys.modules); "
        "sys.exit(str(loaded) if loaded else 0)"
    )
    include = str(Path(freshcast.report.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": include}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
