"""Reusable pieces of the Airflow pipeline: ingestion gate, run records, alerts, dbt call."""
