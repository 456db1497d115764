-- The same refresher on PostgreSQL, on the tables `tripline ingest --to postgres://...` creates
-- (lowercase column names, so no quoting is needed).
--
--   tripline -C examples/nyc-taxi sql --postgres -f sql/03_refresher_postgres.sql

SELECT CAST(tpep_pickup_datetime AS DATE) AS day, count(*) AS trips
FROM yellow_taxi_data
GROUP BY 1
ORDER BY day
LIMIT 10;

SELECT z.borough, z.zone, count(*) AS trips, round(sum(t.total_amount)::numeric, 2) AS revenue
FROM yellow_taxi_data t
JOIN zones z ON t.pulocationid = z.locationid
GROUP BY 1, 2
ORDER BY trips DESC
LIMIT 10;
