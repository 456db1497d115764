{#- Yellow taxi trips: typed and renamed columns, one row per (vendor, pickup time), a surrogate trip id.
    Raw column names are the TLC's (VendorID, PULocationID...), written unquoted: the embedded warehouse matches them
    as written and PostgreSQL folds them to the lower-case names `tripline ingest` gave its columns. -#}

with tripdata as (
    select
        *,
        row_number() over (
            partition by VendorID, tpep_pickup_datetime
            order by tpep_dropoff_datetime nulls last, PULocationID nulls last, DOLocationID nulls last, total_amount nulls last, payment_type nulls last, fare_amount nulls last, tip_amount nulls last, trip_distance nulls last
        ) as rn
    from {{ source('staging', 'yellow_taxi_data') }}
    where VendorID is not null
)
select
    -- identifiers
    {{ dbt_utils.generate_surrogate_key(["'yellow'", 'VendorID', 'tpep_pickup_datetime']) }} as tripid,
    {{ dbt.safe_cast('VendorID', dbt.type_int()) }} as vendorid,
    {{ dbt.safe_cast('RatecodeID', dbt.type_int()) }} as ratecodeid,
    {{ dbt.safe_cast('PULocationID', dbt.type_int()) }} as pickup_locationid,
    {{ dbt.safe_cast('DOLocationID', dbt.type_int()) }} as dropoff_locationid,

    -- timestamps
    cast(tpep_pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast(tpep_dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,

    -- trip info
    store_and_fwd_flag,
    {{ dbt.safe_cast('passenger_count', dbt.type_int()) }} as passenger_count,
    cast(trip_distance as {{ dbt.type_numeric() }}) as trip_distance,
    1 as trip_type,

    -- payment info
    cast(fare_amount as {{ dbt.type_numeric() }}) as fare_amount,
    cast(extra as {{ dbt.type_numeric() }}) as extra,
    cast(mta_tax as {{ dbt.type_numeric() }}) as mta_tax,
    cast(tip_amount as {{ dbt.type_numeric() }}) as tip_amount,
    cast(tolls_amount as {{ dbt.type_numeric() }}) as tolls_amount,
    cast(null as {{ dbt.type_numeric() }}) as ehail_fee,
    cast(improvement_surcharge as {{ dbt.type_numeric() }}) as improvement_surcharge,
    cast(total_amount as {{ dbt.type_numeric() }}) as total_amount,
    coalesce({{ dbt.safe_cast('payment_type', dbt.type_int()) }}, 0) as payment_type,
    {{ get_payment_type_description('payment_type') }} as payment_type_description
from tripdata
where rn = 1

{#- A quick development run: --vars '{is_test_run: true}' -#}
{% if var('is_test_run', default=true) %}
limit 100
{% endif %}
