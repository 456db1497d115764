-- The mart adds up to the fact table: a row here means revenue was lost or counted twice between them.
with fact as (
    select count(*) as trips, sum(total_amount) as revenue from {{ ref('fact_trips') }}
),
mart as (
    select sum(total_monthly_trips) as trips, sum(revenue_monthly_total_amount) as revenue
    from {{ ref('dm_monthly_zone_revenue') }}
)
select fact.trips, mart.trips as mart_trips, fact.revenue, mart.revenue as mart_revenue
from fact cross join mart
where fact.trips != mart.trips or fact.revenue != mart.revenue
