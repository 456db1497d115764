-- The course's SQL refresher: trips joined to zones, per day and per zone. It runs unchanged on the warehouse
-- and on PostgreSQL (after `tripline ingest ... --to postgres://...` loaded yellow_taxi_data and zones):
--
--   tripline -C examples/nyc-taxi sql -f sql/03_refresher.sql
--   tripline -C examples/nyc-taxi sql --postgres -f sql/03_refresher_postgres.sql

CREATE OR REPLACE EXTERNAL TABLE nytaxi.zones
OPTIONS (format = 'CSV', uris = ['seeds/*.csv']);

-- Trips per pickup day.
SELECT CAST(tpep_pickup_datetime AS DATE) AS day, count(*) AS trips
FROM nytaxi.yellow_tripdata_partitioned
GROUP BY 1
ORDER BY day
LIMIT 10;

-- The busiest pickup zones and their revenue.
SELECT z.borough, z.zone, count(*) AS trips, round(sum(t.total_amount), 2) AS revenue
FROM nytaxi.yellow_tripdata_partitioned t
JOIN nytaxi.zones z ON t.PULocationID = z.locationid
GROUP BY 1, 2
ORDER BY trips DESC
LIMIT 10;
