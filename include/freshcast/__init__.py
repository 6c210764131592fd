"""freshcast: LSTM/GRU time-series forecasters kept fresh by Apache Airflow 3.

The package holds all the logic and never imports airflow; dags/ only wires its steps.
"""

import os
import re
import sys

# TensorFlow's C++ start-up lines (CPU feature guard, oneDNN and CUDA notices) go to stderr,
# which Airflow's task logs show as red ERROR lines. Keep its warnings and errors only (a level a
# user sets wins). It must be set before TensorFlow is first imported, hence here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# TensorFlow's C++ notices: absl INFO lines ("I0000 ... port.cc] oneDNN custom operations are on")
# and absl's own line about logging before it was set up.
_TF_NOTICE = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog")


def import_keras():
    """Import Keras (and TensorFlow under it) with TensorFlow's C++ start-up notices kept off
    stderr; every other line written meanwhile is passed on.

    On CPUs where oneDNN is on, TensorFlow logs a notice through absl before its logging is set
    up, which TF_CPP_MIN_LOG_LEVEL cannot hide, and Airflow shows each stderr line of a task as a
    red ERROR. Only modules that run a model call this (see `freshcast.models`).
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import keras
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if not _TF_NOTICE.match(line):
                    sys.stderr.write(line)
    return keras
