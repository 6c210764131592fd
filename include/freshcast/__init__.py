"""freshcast: LSTM/GRU time-series forecasters kept fresh by Apache Airflow 3.

The package holds all the logic and never imports airflow; dags/ only wires its steps.
"""

import os

# TensorFlow's C++ start-up lines (CPU feature guard, oneDNN and CUDA notices) go to stderr,
# which Airflow's task logs show as red ERROR lines. Keep its warnings and errors only (a level a
# user sets wins). It must be set before TensorFlow is first imported, hence here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
