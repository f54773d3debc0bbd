-- Runs once, when the PostgreSQL container initialises an empty data volume.
-- The image creates the warehouse (POSTGRES_DB=smart_access); Airflow keeps its
-- metadata in a database of its own, as in the embedded stack. Schemas and roles of
-- the warehouse come from the project's migrations (the `migrate` service).
create database airflow;
