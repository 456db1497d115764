//! The TLC trip record schemas: one unified table schema per kind of trip, covering every era of the published
//! files (CSV up to 2022, Parquet since), so a year of months lands in one table however the files drifted.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Which TLC data set a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TripKind {
    /// Yellow taxi trips (`yellow_tripdata_YYYY-MM`).
    Yellow,
    /// Green (boro) taxi trips (`green_tripdata_YYYY-MM`).
    Green,
    /// For-hire vehicle trips (`fhv_tripdata_YYYY-MM`).
    Fhv,
    /// High-volume for-hire trips: Uber, Lyft, ... (`fhvhv_tripdata_YYYY-MM`).
    Fhvhv,
    /// The taxi zone lookup (`taxi_zone_lookup.csv`).
    Zones,
}

impl TripKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [TripKind; 5] = [
        Self::Yellow,
        Self::Green,
        Self::Fhv,
        Self::Fhvhv,
        Self::Zones,
    ];

    /// The lowercase name used on the command line and in lake paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::Yellow => "yellow",
            Self::Green => "green",
            Self::Fhv => "fhv",
            Self::Fhvhv => "fhvhv",
            Self::Zones => "zones",
        }
    }

    /// The columns of the unified table, in table order.
    pub fn columns(self) -> &'static [ColumnSpec] {
        match self {
            Self::Yellow => YELLOW,
            Self::Green => GREEN,
            Self::Fhv => FHV,
            Self::Fhvhv => FHVHV,
            Self::Zones => ZONES,
        }
    }

    /// The unified Arrow schema of this kind (timestamps as microseconds, no time zone, like the TLC's Parquet).
    pub fn schema(self) -> SchemaRef {
        static CACHE: [OnceLock<SchemaRef>; 5] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let slot = &CACHE[self as usize];
        slot.get_or_init(|| {
            let fields: Vec<Field> = self
                .columns()
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow(), true))
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
    }

    /// Index of the pickup timestamp column, the one that places a trip in a month (`None` for zones).
    pub fn pickup_column(self) -> Option<usize> {
        let name = match self {
            Self::Yellow => "tpep_pickup_datetime",
            Self::Green => "lpep_pickup_datetime",
            Self::Fhv | Self::Fhvhv => "pickup_datetime",
            Self::Zones => return None,
        };
        self.columns().iter().position(|c| c.name == name)
    }

    /// Whether files of this kind are monthly trip files (everything but the zone lookup).
    pub fn is_trips(self) -> bool {
        self != Self::Zones
    }

    /// Find a column by name the way TLC files need it: ignoring ASCII case (`Airport_fee` vs `airport_fee`,
    /// `PUlocationID` vs `PULocationID`) and known renames.
    pub fn find_column(self, header: &str) -> Option<usize> {
        let header = header.trim().trim_start_matches('\u{feff}');
        self.columns().iter().position(|c| {
            c.name.eq_ignore_ascii_case(header)
                || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(header))
        })
    }
}

impl fmt::Display for TripKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TripKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown kind '{s}': expected one of yellow, green, fhv, fhvhv, zones")
            })
    }
}

/// The type a column has in the unified table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 32-bit integer (location IDs, vendor).
    Int32,
    /// 64-bit integer (codes and counts that the TLC publishes as int64).
    Int64,
    /// Double precision (money, distances).
    Float64,
    /// Timestamp without time zone, microseconds.
    Timestamp,
    /// Text.
    Utf8,
}

impl ColumnType {
    /// The Arrow type of the column.
    pub fn arrow(self) -> DataType {
        match self {
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Utf8 => DataType::Utf8,
        }
    }

    /// The PostgreSQL type of the column.
    pub fn postgres(self) -> &'static str {
        match self {
            Self::Int32 => "integer",
            Self::Int64 => "bigint",
            Self::Float64 => "double precision",
            Self::Timestamp => "timestamp",
            Self::Utf8 => "text",
        }
    }

    /// What a value of this type looks like, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            Self::Int32 | Self::Int64 => "an integer",
            Self::Float64 => "a number",
            Self::Timestamp => "a timestamp like 2021-01-31 23:59:59",
            Self::Utf8 => "text",
        }
    }
}

/// A value-level rule beyond the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Any value of the type.
    Any,
    /// A taxi zone ID, 1 to 265 inclusive.
    LocationId,
}

impl Domain {
    /// Check an integer against the rule; `Err` holds the reason.
    pub fn check_int(self, v: i64) -> Result<(), &'static str> {
        match self {
            Self::Any => Ok(()),
            Self::LocationId if (1..=265).contains(&v) => Ok(()),
            Self::LocationId => Err("zone ID out of range 1..=265"),
        }
    }
}

/// One column of a unified table.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// The canonical TLC name, as in the TLC's current Parquet files.
    pub name: &'static str,
    /// Its type in the unified table.
    pub ty: ColumnType,
    /// Present in every era of the files: a header without it is the wrong file.
    pub required: bool,
    /// Other spellings seen in older files.
    pub aliases: &'static [&'static str],
    /// Value rule.
    pub domain: Domain,
}

const fn col(name: &'static str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        required: true,
        aliases: &[],
        domain: Domain::Any,
    }
}

const fn opt(name: &'static str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        required: false,
        aliases: &[],
        domain: Domain::Any,
    }
}

const fn zone(name: &'static str, required: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        ty: ColumnType::Int32,
        required,
        aliases: &[],
        domain: Domain::LocationId,
    }
}

use ColumnType::{Float64 as F64, Int32 as I32, Int64 as I64, Timestamp as TS, Utf8 as STR};

/// Yellow taxi trips. CSV era: the first 18 columns (`congestion_surcharge` since 2019); `airport_fee` since 2021
/// (spelled `Airport_fee` in 2023), `cbd_congestion_fee` since 2025.
pub static YELLOW: &[ColumnSpec] = &[
    col("VendorID", I32),
    col("tpep_pickup_datetime", TS),
    col("tpep_dropoff_datetime", TS),
    col("passenger_count", I64),
    col("trip_distance", F64),
    col("RatecodeID", I64),
    col("store_and_fwd_flag", STR),
    zone("PULocationID", true),
    zone("DOLocationID", true),
    col("payment_type", I64),
    col("fare_amount", F64),
    col("extra", F64),
    col("mta_tax", F64),
    col("tip_amount", F64),
    col("tolls_amount", F64),
    col("improvement_surcharge", F64),
    col("total_amount", F64),
    opt("congestion_surcharge", F64),
    opt("airport_fee", F64),
    opt("cbd_congestion_fee", F64),
];

/// Green taxi trips. `ehail_fee` is always empty in practice (and typed int in some Parquet months).
pub static GREEN: &[ColumnSpec] = &[
    col("VendorID", I32),
    col("lpep_pickup_datetime", TS),
    col("lpep_dropoff_datetime", TS),
    col("store_and_fwd_flag", STR),
    col("RatecodeID", I64),
    zone("PULocationID", true),
    zone("DOLocationID", true),
    col("passenger_count", I64),
    col("trip_distance", F64),
    col("fare_amount", F64),
    col("extra", F64),
    col("mta_tax", F64),
    col("tip_amount", F64),
    col("tolls_amount", F64),
    opt("ehail_fee", F64),
    col("improvement_surcharge", F64),
    col("total_amount", F64),
    col("payment_type", I64),
    opt("trip_type", I64),
    opt("congestion_surcharge", F64),
    opt("cbd_congestion_fee", F64),
];

/// For-hire vehicle trips (`dropOff_datetime`, `PUlocationID` in the files; matched without case).
pub static FHV: &[ColumnSpec] = &[
    col("dispatching_base_num", STR),
    col("pickup_datetime", TS),
    ColumnSpec {
        aliases: &["dropOff_datetime"],
        ..col("dropoff_datetime", TS)
    },
    zone("PUlocationID", false),
    zone("DOlocationID", false),
    opt("SR_Flag", I32),
    opt("Affiliated_base_number", STR),
];

/// High-volume for-hire trips. The 2019 CSVs had only the first seven columns and `SR_Flag`.
pub static FHVHV: &[ColumnSpec] = &[
    col("hvfhs_license_num", STR),
    col("dispatching_base_num", STR),
    opt("originating_base_num", STR),
    opt("request_datetime", TS),
    opt("on_scene_datetime", TS),
    col("pickup_datetime", TS),
    col("dropoff_datetime", TS),
    zone("PULocationID", true),
    zone("DOLocationID", true),
    opt("trip_miles", F64),
    opt("trip_time", I64),
    opt("base_passenger_fare", F64),
    opt("tolls", F64),
    opt("bcf", F64),
    opt("sales_tax", F64),
    opt("congestion_surcharge", F64),
    opt("airport_fee", F64),
    opt("tips", F64),
    opt("driver_pay", F64),
    opt("shared_request_flag", STR),
    opt("shared_match_flag", STR),
    opt("access_a_ride_flag", STR),
    opt("wav_request_flag", STR),
    opt("wav_match_flag", STR),
    opt("SR_Flag", I32),
    opt("cbd_congestion_fee", F64),
];

/// The taxi zone lookup (the published CSV spells the header in lowercase).
pub static ZONES: &[ColumnSpec] = &[
    zone("LocationID", true),
    col("Borough", STR),
    col("Zone", STR),
    col("service_zone", STR),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yellow_csv_era_header_maps_in_order() {
        let header = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,\
            store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,\
            tolls_amount,improvement_surcharge,total_amount,congestion_surcharge";
        let idx: Vec<usize> = header
            .split(',')
            .map(|h| TripKind::Yellow.find_column(h).unwrap())
            .collect();
        assert_eq!(idx, (0..18).collect::<Vec<_>>());
    }

    #[test]
    fn column_names_match_without_case_and_through_aliases() {
        assert_eq!(TripKind::Yellow.find_column("Airport_fee"), Some(18));
        assert_eq!(
            TripKind::Zones.find_column("\"locationid\"".trim_matches('"')),
            Some(0)
        );
        assert_eq!(TripKind::Fhv.find_column("dropOff_datetime"), Some(2));
        assert_eq!(TripKind::Fhv.find_column("PULocationID"), Some(3));
        assert_eq!(TripKind::Yellow.find_column("no_such_column"), None);
    }

    #[test]
    fn every_trip_kind_has_a_pickup_column_of_timestamp_type() {
        for kind in TripKind::ALL.into_iter().filter(|k| k.is_trips()) {
            let i = kind.pickup_column().expect("pickup column");
            assert_eq!(kind.columns()[i].ty, ColumnType::Timestamp, "{kind}");
        }
        assert_eq!(TripKind::Zones.pickup_column(), None);
    }

    #[test]
    fn kinds_parse_from_their_names() {
        for kind in TripKind::ALL {
            assert_eq!(kind.name().parse::<TripKind>().unwrap(), kind);
        }
        assert!(
            "taxi"
                .parse::<TripKind>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
