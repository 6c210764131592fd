"""Airflow DAGs of the pipeline specs in shard 3 of forecast_pipelines.SHARDS (by a hash of
the pipeline's name): train_, forecast_ and rollback_<name> for each. See forecast_pipelines.py.
"""

from forecast_pipelines import define_pipelines

define_pipelines(globals(), shard=3)
