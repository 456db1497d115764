-- The course's warehouse lesson on the lake: an external table over the raw Parquet files `tripline ingest`
-- wrote, then the same trips as a plain table, a table partitioned by pickup date, and one partitioned and
-- clustered by VendorID.
--
--   tripline -C examples/nyc-taxi sql -f sql/01_tables.sql

CREATE OR REPLACE EXTERNAL TABLE nytaxi.external_yellow_tripdata
OPTIONS (format = 'PARQUET', uris = ['lake/raw/yellow/*']);

CREATE OR REPLACE TABLE nytaxi.yellow_tripdata_non_partitioned AS
SELECT * FROM nytaxi.external_yellow_tripdata;

CREATE OR REPLACE TABLE nytaxi.yellow_tripdata_partitioned
PARTITION BY DATE(tpep_pickup_datetime) AS
SELECT * FROM nytaxi.external_yellow_tripdata;

CREATE OR REPLACE TABLE nytaxi.yellow_tripdata_partitioned_clustered
PARTITION BY DATE(tpep_pickup_datetime)
CLUSTER BY VendorID AS
SELECT * FROM nytaxi.external_yellow_tripdata;
