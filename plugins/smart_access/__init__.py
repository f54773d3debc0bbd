"""Smart-access logic shared by the Airflow DAG and the command line.

`smart_access.dbt` runs dbt and records its results (see run_dbt_build).
"""
