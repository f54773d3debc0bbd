#!/bin/bash
# Runs once, when the PostgreSQL container initialises an empty data volume.
# The image creates the warehouse (POSTGRES_DB=smart_access); Airflow keeps its
# metadata in a database of its own, owned by a role of its own (not the superuser),
# as in the embedded stack. Schemas and roles of the warehouse come from the
# project's migrations (the `migrate` service).
set -euo pipefail
: "${AIRFLOW_METADATA_PASSWORD:?set AIRFLOW_METADATA_PASSWORD in .env.airflow}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v password="$AIRFLOW_METADATA_PASSWORD" <<'SQL'
create role smart_access_airflow login password :'password';
create database airflow owner smart_access_airflow;
revoke all on database airflow from public;
\connect airflow
alter schema public owner to smart_access_airflow;
SQL
