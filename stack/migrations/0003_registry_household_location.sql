-- Device registry records may say where the household is: its region (for the
-- regional rollups) and IANA time zone (for local-time rhythms). Both optional
-- fields of the v1 registry contract, so older producers keep working.
alter table raw.device_registry add column if not exists region text;
alter table raw.device_registry add column if not exists timezone text;
