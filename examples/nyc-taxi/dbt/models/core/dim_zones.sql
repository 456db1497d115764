{#- The taxi zones, from the TLC's lookup seed, without the unknown zone. -#}
select
    locationid,
    borough,
    zone,
    replace(service_zone, 'Boro', 'Green') as service_zone
from {{ ref('taxi_zone_lookup') }}
where borough != 'Unknown'
