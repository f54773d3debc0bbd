"""Smart-access logic shared by the Airflow DAG and the command line.

`smart_access.dbt` runs dbt and records its results (see run_dbt_build);
`smart_access.pipeline` holds the DAG's task bodies (ingestion gate, dbt, run record).
"""
