"""freshcast: LSTM/GRU time-series forecasters kept fresh by Apache Airflow 3.

The package holds all the logic and never imports airflow; dags/ only wires its steps.
"""

__version__ = "0.1.0"
