# syntax=docker/dockerfile:1
# Airflow for docker-compose.airflow.yml: the official image at the version pinned in
# pyproject.toml, plus the project's locked dependencies (dbt, cosmos, providers,
# confluent-kafka, ...) and the `streaming` package. dags/, plugins/ and dbt_project/
# are mounted by the compose file. Build context: the repository root.

# uv.lock -> requirements.txt with hashes, outside the Airflow image.
FROM python:3.11-slim-bookworm AS requirements
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv export --frozen --no-dev --no-emit-project --format requirements.txt \
        --output-file /requirements.txt

# Python 3.11, like the lock (requires-python >=3.11,<3.12).
FROM apache/airflow:3.3.2-python3.11

COPY --from=requirements /requirements.txt /requirements.txt
# The lock pins apache-airflow at the image's version; pip keeps what already matches.
RUN pip install --no-cache-dir --require-hashes -r /requirements.txt

USER root
# The simple auth manager's password file lives here (a named volume); group 0 may
# write, so any AIRFLOW_UID with gid 0 works.
RUN mkdir -p /opt/airflow/auth \
    && chown airflow:0 /opt/airflow/auth \
    && chmod 0770 /opt/airflow/auth
USER airflow

COPY --chown=airflow:0 streaming/ /opt/airflow/streaming/
ENV PYTHONPATH=/opt/airflow:/opt/airflow/plugins
