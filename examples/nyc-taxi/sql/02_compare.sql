-- The same question on each table. Run it with --dry-run first, as the course does in the BigQuery console:
-- the partitioned table reads only the days asked for, the clustered one fewer bytes again.
--
--   tripline -C examples/nyc-taxi sql --dry-run -f sql/02_compare.sql
--   tripline -C examples/nyc-taxi sql -f sql/02_compare.sql

SELECT DISTINCT VendorID
FROM nytaxi.yellow_tripdata_non_partitioned
WHERE DATE(tpep_pickup_datetime) BETWEEN '2024-01-10' AND '2024-01-16'
ORDER BY VendorID;

SELECT DISTINCT VendorID
FROM nytaxi.yellow_tripdata_partitioned
WHERE DATE(tpep_pickup_datetime) BETWEEN '2024-01-10' AND '2024-01-16'
ORDER BY VendorID;

SELECT count(*) AS trips
FROM nytaxi.yellow_tripdata_partitioned
WHERE DATE(tpep_pickup_datetime) BETWEEN '2024-01-10' AND '2024-01-16'
  AND VendorID = 1;

SELECT count(*) AS trips
FROM nytaxi.yellow_tripdata_partitioned_clustered
WHERE DATE(tpep_pickup_datetime) BETWEEN '2024-01-10' AND '2024-01-16'
  AND VendorID = 1;
