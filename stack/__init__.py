"""The embedded stack: PostgreSQL, an Apache Kafka broker and the platform's services
run as local processes under supervisord, with no Docker."""
