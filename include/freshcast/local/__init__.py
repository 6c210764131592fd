"""Airflow on this machine for `make run` / `make stop`, driven over its REST API.

- `config`: the home, airflow.cfg, the password, the metadata database;
- `processes`: start, watch and stop the components (and Celery workers);
- `api`: the REST client (apache-airflow-client);
- `commands`: run, rollback, replay; `status`: make status;
- `__main__`: the command line, `python -m freshcast.local`.

It runs the four Airflow 3 components that `airflow standalone` would, with LocalExecutor and
SQLite (or PostgreSQL), or with CeleryExecutor, PostgreSQL and Redis for the distributed tests.
Everything listens on 127.0.0.1. Nothing here imports airflow: it runs the `airflow` CLI and
talks to the api-server.
"""
