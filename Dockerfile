# The Airflow image for docker-compose.yaml: Airflow's official image of the pinned version,
# plus the project's pinned requirements (CeleryExecutor, PostgreSQL, S3 extras included).
# dags/, plugins/ and include/ are mounted by docker-compose.yaml, not copied.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
COPY requirements.txt requirements-distributed.txt /tmp/freshcast/
# apache-airflow is named with its version so pip can never move it (Airflow's docs on
# extending the image); every other package comes pinned from the requirements files.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
      -r /tmp/freshcast/requirements-distributed.txt
# The freshcast package lives in the mounted include/ folder.
ENV PYTHONPATH=/opt/airflow/include
