//! Behaviour of the generator as a user of the files sees it.

use std::fs::{self, File};
use std::io::Read;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tripline_core::time::{MICROS_PER_DAY, parse_timestamp};
use tripline_core::{ColumnType, TripKind, YearMonth};

use super::*;

fn month(s: &str) -> YearMonth {
    s.parse().unwrap()
}

const TRIP_KINDS: [TripKind; 4] = [
    TripKind::Yellow,
    TripKind::Green,
    TripKind::Fhv,
    TripKind::Fhvhv,
];

/// Write a file into a fresh temporary directory; returns the directory (kept alive), the bytes and the report.
fn generate(
    generator: &TripGenerator,
    rows: u64,
    format: OutputFormat,
) -> (tempfile::TempDir, Vec<u8>, DatagenReport) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("out.{format}"));
    let report = generator.write(rows, format, &path).unwrap();
    let bytes = fs::read(&path).unwrap();
    (dir, bytes, report)
}

fn csv_text(generator: &TripGenerator, rows: u64) -> (String, DatagenReport) {
    let (_dir, bytes, report) = generate(generator, rows, OutputFormat::Csv);
    (String::from_utf8(bytes).unwrap(), report)
}

fn all_rows(generator: &TripGenerator, rows: u64) -> RecordBatch {
    let batches: Vec<RecordBatch> = generator.batches(rows, 4096).collect();
    concat_batches(&generator.kind().schema(), &batches).unwrap()
}

fn read_parquet(dir: &tempfile::TempDir) -> RecordBatch {
    let file = File::open(dir.path().join("out.parquet")).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    concat_batches(&schema, &batches).unwrap()
}

#[test]
fn the_same_seed_gives_identical_files_and_another_seed_different_ones() {
    let base = TripGenerator::new(TripKind::Yellow, month("2021-01")).with_dirty_rate(0.02);
    for format in [
        OutputFormat::Csv,
        OutputFormat::CsvGz,
        OutputFormat::Parquet,
    ] {
        let (_a, first, _) = generate(&base, 3_000, format);
        let (_b, again, _) = generate(&base.clone(), 3_000, format);
        let (_c, other, _) = generate(&base.clone().with_seed(7), 3_000, format);
        assert!(first == again, "{format}: same seed, different bytes");
        assert!(first != other, "{format}: different seeds, same bytes");
    }
}

#[test]
fn every_kind_is_reproducible() {
    for kind in TripKind::ALL {
        let generator = TripGenerator::new(kind, month("2022-06"))
            .with_seed(3)
            .with_dirty_rate(0.1);
        assert_eq!(
            csv_text(&generator, 500).0,
            csv_text(&generator, 500).0,
            "{kind}"
        );
    }
}

#[test]
fn rows_do_not_depend_on_the_batch_size() {
    for kind in TripKind::ALL {
        let generator = TripGenerator::new(kind, month("2021-01"));
        let concat = |size| {
            let batches: Vec<RecordBatch> = generator.batches(1_000, size).collect();
            concat_batches(&kind.schema(), &batches).unwrap()
        };
        let whole = concat(1_000);
        assert_eq!(concat(1), whole, "{kind}");
        assert_eq!(concat(7), whole, "{kind}");
        assert_eq!(concat(0), whole, "{kind}: batch size 0 counts as 1");
    }
    let generator = TripGenerator::new(TripKind::Yellow, month("2021-01"));
    let sizes: Vec<usize> = generator.batches(10, 4).map(|b| b.num_rows()).collect();
    assert_eq!(sizes, [4, 4, 2]);
}

#[test]
fn parquet_holds_the_same_rows_as_the_batches() {
    for kind in TripKind::ALL {
        let generator = TripGenerator::new(kind, month("2023-03"));
        let (dir, _, report) = generate(&generator, 2_000, OutputFormat::Parquet);
        let back = read_parquet(&dir);
        assert_eq!(back.schema().fields(), kind.schema().fields(), "{kind}");
        assert_eq!(back.num_rows() as u64, report.rows, "{kind}");
        assert_eq!(
            back.columns(),
            all_rows(&generator, 2_000).columns(),
            "{kind}"
        );
    }
}

#[test]
fn parquet_row_groups_hold_128k_rows_with_snappy() {
    let generator = TripGenerator::new(TripKind::Fhv, month("2021-01"));
    let (dir, _, _) = generate(&generator, 300_000, OutputFormat::Parquet);
    let file = File::open(dir.path().join("out.parquet")).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let groups: Vec<i64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, [131_072, 131_072, 37_856]);
    let column = builder.metadata().row_group(0).column(0);
    assert_eq!(column.compression(), parquet::basic::Compression::SNAPPY);
}

#[test]
fn gzipped_csv_decompresses_to_the_csv_bytes() {
    let generator = TripGenerator::new(TripKind::Green, month("2021-05")).with_dirty_rate(0.01);
    let (_a, csv, csv_report) = generate(&generator, 5_000, OutputFormat::Csv);
    let (_b, gz, gz_report) = generate(&generator, 5_000, OutputFormat::CsvGz);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert!(unzipped == csv);
    assert!(
        gz.len() * 2 < csv.len(),
        "gzip compresses: {} vs {}",
        gz.len(),
        csv.len()
    );
    assert_eq!(gz_report.dirty_rows, csv_report.dirty_rows);
    assert_eq!(gz_report.bytes, gz.len() as u64);
}

#[test]
fn csv_headers_are_the_tlc_ones() {
    let expected = [
        (
            TripKind::Yellow,
            "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,\
             store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,\
             tolls_amount,improvement_surcharge,total_amount,congestion_surcharge",
        ),
        (
            TripKind::Green,
            "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,RatecodeID,PULocationID,\
             DOLocationID,passenger_count,trip_distance,fare_amount,extra,mta_tax,tip_amount,tolls_amount,\
             ehail_fee,improvement_surcharge,total_amount,payment_type,trip_type,congestion_surcharge",
        ),
        (
            TripKind::Fhv,
            "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,DOlocationID,SR_Flag,\
             Affiliated_base_number",
        ),
        (
            TripKind::Fhvhv,
            "hvfhs_license_num,dispatching_base_num,pickup_datetime,dropoff_datetime,PULocationID,DOLocationID,\
             SR_Flag",
        ),
        (
            TripKind::Zones,
            "\"LocationID\",\"Borough\",\"Zone\",\"service_zone\"",
        ),
    ];
    for (kind, header) in expected {
        let (text, _) = csv_text(&TripGenerator::new(kind, month("2021-01")), 3);
        assert_eq!(text.lines().next().unwrap(), header, "{kind}");
    }
    // Yellow: the unified schema minus the Parquet-only columns; green: minus cbd_congestion_fee.
    let names = |kind: TripKind, drop: usize| -> Vec<&str> {
        let cols = kind.columns();
        cols[..cols.len() - drop].iter().map(|c| c.name).collect()
    };
    assert_eq!(
        csv::header(TripKind::Yellow).split(',').collect::<Vec<_>>(),
        names(TripKind::Yellow, 2)
    );
    assert_eq!(
        csv::header(TripKind::Green).split(',').collect::<Vec<_>>(),
        names(TripKind::Green, 1)
    );
}

#[test]
fn csv_values_look_like_the_tlc_files() {
    let (text, _) = csv_text(
        &TripGenerator::new(TripKind::Yellow, month("2021-01")),
        2_000,
    );
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 18, "{line}");
        assert!(
            parse_timestamp(f[1]).is_some() && f[1].len() == 19,
            "{line}"
        );
        assert_eq!(f[12], "0.5", "mta_tax: {line}");
        assert_eq!(f[15], "0.3", "improvement_surcharge before 2022-12: {line}");
        for money in [f[4], f[10], f[11], f[13], f[14], f[16]] {
            assert!(
                !money.ends_with(".0") && !money.ends_with('.'),
                "shortest form: {line}"
            );
            assert!(
                !(money.contains('.') && money.ends_with('0')),
                "shortest form: {line}"
            );
        }
    }
    assert!(
        text.contains(",0.5,0.5,"),
        "extra 0.5 then mta_tax 0.5 appear"
    );
}

#[test]
fn total_amount_is_the_exact_sum_of_its_parts() {
    for (kind, m) in [
        (TripKind::Yellow, "2021-01"),
        (TripKind::Yellow, "2025-02"),
        (TripKind::Yellow, "2018-03"),
        (TripKind::Green, "2021-01"),
        (TripKind::Green, "2025-02"),
    ] {
        let batch = all_rows(&TripGenerator::new(kind, month(m)), 20_000);
        let parts = [
            "fare_amount",
            "extra",
            "mta_tax",
            "tip_amount",
            "tolls_amount",
            "improvement_surcharge",
            "congestion_surcharge",
            "airport_fee",
            "cbd_congestion_fee",
        ];
        let total = cents_column(&batch, "total_amount");
        let columns: Vec<Vec<Option<i64>>> = parts
            .iter()
            .filter(|p| batch.schema().index_of(p).is_ok())
            .map(|p| cents_column(&batch, p))
            .collect();
        for row in 0..batch.num_rows() {
            let sum: i64 = columns.iter().map(|c| c[row].unwrap_or(0)).sum();
            assert_eq!(Some(sum), total[row], "{kind} {m} row {row}");
        }
    }
    // In CSV-era months without Parquet-only fees the CSV columns add up too.
    let (text, _) = csv_text(
        &TripGenerator::new(TripKind::Yellow, month("2020-07")),
        5_000,
    );
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let cents = |s: &str| {
            if s.is_empty() {
                0
            } else {
                (s.parse::<f64>().unwrap() * 100.0).round() as i64
            }
        };
        let sum: i64 = [10, 11, 12, 13, 14, 15, 17]
            .iter()
            .map(|&i| cents(f[i]))
            .sum();
        assert_eq!(sum, cents(f[16]), "{line}");
    }
}

#[test]
fn fees_follow_the_rules_of_the_month() {
    let values = |kind: TripKind, m: &str, col: &str| -> Vec<Option<i64>> {
        cents_column(&all_rows(&TripGenerator::new(kind, month(m)), 20_000), col)
    };
    let distinct = |v: Vec<Option<i64>>| {
        let mut v = v;
        v.sort_unstable();
        v.dedup();
        v
    };
    assert_eq!(
        distinct(values(TripKind::Yellow, "2022-11", "improvement_surcharge")),
        [Some(30)]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2023-01", "improvement_surcharge")),
        [Some(100)]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2020-05", "airport_fee")),
        [None]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2021-05", "airport_fee")),
        [None, Some(0), Some(125)]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2024-05", "cbd_congestion_fee")),
        [None]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2025-05", "cbd_congestion_fee")),
        [Some(0), Some(75)]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2018-05", "congestion_surcharge")),
        [None]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2021-05", "congestion_surcharge")),
        [None, Some(0), Some(250)]
    );
    assert_eq!(
        distinct(values(TripKind::Green, "2021-05", "ehail_fee")),
        [None]
    );
    assert_eq!(
        distinct(values(TripKind::Yellow, "2021-05", "mta_tax")),
        [Some(50)]
    );
    let fhvhv_cbd = distinct(values(TripKind::Fhvhv, "2025-05", "cbd_congestion_fee"));
    assert_eq!(fhvhv_cbd, [Some(0), Some(150)]);
}

#[test]
fn card_payments_tip_and_cash_payments_do_not() {
    let batch = all_rows(
        &TripGenerator::new(TripKind::Yellow, month("2021-01")),
        20_000,
    );
    let payment = opt_i64(&batch, "payment_type");
    let tip = cents_column(&batch, "tip_amount");
    let fare = cents_column(&batch, "fare_amount");
    let (mut card, mut card_tipped, mut share_sum) = (0, 0, 0.0);
    for row in 0..batch.num_rows() {
        match payment[row] {
            Some(1) => {
                card += 1;
                if tip[row].unwrap() > 0 {
                    card_tipped += 1;
                    share_sum += tip[row].unwrap() as f64 / fare[row].unwrap() as f64;
                }
            }
            Some(_) => assert_eq!(tip[row], Some(0), "row {row}"),
            None => {}
        }
    }
    assert!(card > 12_000, "most yellow trips are paid by card: {card}");
    assert!(card_tipped * 10 > card * 8, "most card payments tip");
    let mean_share = share_sum / f64::from(card_tipped);
    assert!(
        (0.15..0.35).contains(&mean_share),
        "mean tip share of fare {mean_share}"
    );
}

#[test]
fn pickups_fall_in_the_month_and_dropoffs_follow_them() {
    for kind in TRIP_KINDS {
        let m = month("2021-02");
        let batch = all_rows(&TripGenerator::new(kind, m), 30_000);
        let pickup = timestamps(&batch, kind.columns()[kind.pickup_column().unwrap()].name);
        let dropoff_name = match kind {
            TripKind::Yellow => "tpep_dropoff_datetime",
            TripKind::Green => "lpep_dropoff_datetime",
            _ => "dropoff_datetime",
        };
        let dropoff = timestamps(&batch, dropoff_name);
        let mut outside = 0;
        let mut days = std::collections::BTreeSet::new();
        for row in 0..batch.num_rows() {
            let (p, d) = (pickup[row].unwrap(), dropoff[row].unwrap());
            assert!(
                d >= p + 60 * 1_000_000,
                "{kind}: dropoff at least a minute after pickup, row {row}"
            );
            assert!(
                d - p < 4 * 3600 * 1_000_000,
                "{kind}: trips shorter than 4 hours, row {row}"
            );
            if p < m.start_micros() || p >= m.end_micros() {
                outside += 1;
                assert!(
                    p >= m.start_micros() - MICROS_PER_DAY && p < m.start_micros(),
                    "{kind}: row {row}"
                );
            } else {
                days.insert((p - m.start_micros()) / MICROS_PER_DAY);
            }
        }
        assert!(
            (1..=120).contains(&outside),
            "{kind}: {outside} of 30000 pickups outside the month"
        );
        assert_eq!(days.len(), 28, "{kind}: pickups on every day of February");
    }
}

#[test]
fn hours_have_a_quiet_night_and_rush_hours() {
    let batch = all_rows(
        &TripGenerator::new(TripKind::Yellow, month("2021-03")),
        50_000,
    );
    let pickup = timestamps(&batch, "tpep_pickup_datetime");
    let mut weekday_hours = [0u32; 24];
    let mut weekend_hours = [0u32; 24];
    for p in pickup.iter().flatten() {
        let day = p.div_euclid(MICROS_PER_DAY);
        let hour = (p.rem_euclid(MICROS_PER_DAY) / 3_600_000_000) as usize;
        let hours = if (day + 3).rem_euclid(7) >= 5 {
            &mut weekend_hours
        } else {
            &mut weekday_hours
        };
        hours[hour] += 1;
    }
    assert!(
        weekday_hours[4] * 5 < weekday_hours[18],
        "{weekday_hours:?}"
    );
    assert!(
        weekday_hours[8] > weekday_hours[10],
        "morning rush: {weekday_hours:?}"
    );
    assert!(
        weekday_hours[18] > weekday_hours[14],
        "evening rush: {weekday_hours:?}"
    );
    let night_share = |h: &[u32; 24]| f64::from(h[1] + h[2]) / f64::from(h.iter().sum::<u32>());
    assert!(
        night_share(&weekend_hours) > 2.0 * night_share(&weekday_hours),
        "weekend nights are busier"
    );
}

#[test]
fn distance_duration_and_fare_agree() {
    let batch = all_rows(
        &TripGenerator::new(TripKind::Yellow, month("2021-01")),
        20_000,
    );
    let pickup = timestamps(&batch, "tpep_pickup_datetime");
    let dropoff = timestamps(&batch, "tpep_dropoff_datetime");
    let distance = batch
        .column_by_name("trip_distance")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let fare = cents_column(&batch, "fare_amount");
    let rate = opt_i64(&batch, "RatecodeID");
    for row in 0..batch.num_rows() {
        let hours = (dropoff[row].unwrap() - pickup[row].unwrap()) as f64 / 3.6e9;
        let miles = distance.value(row);
        assert!((0.1..60.0).contains(&miles), "row {row}: {miles} miles");
        let mph = miles / hours;
        assert!((0.5..60.0).contains(&mph), "row {row}: {mph} mph");
        if rate[row] == Some(1) {
            let metered = fare[row].unwrap() as f64 / 100.0;
            assert!(
                metered >= 2.5 + miles * 2.5 - 0.01,
                "row {row}: fare {metered} for {miles} miles"
            );
            assert!(
                metered <= 2.5 + miles * 2.5 + hours * 60.0 * 0.5 + 0.5,
                "row {row}: fare {metered}"
            );
        }
    }
}

#[test]
fn zone_ids_stay_in_range_and_follow_the_kind() {
    for kind in TRIP_KINDS {
        let batch = all_rows(&TripGenerator::new(kind, month("2021-01")), 20_000);
        let schema = batch.schema();
        let zone_columns = kind
            .columns()
            .iter()
            .filter(|c| c.domain == tripline_core::schema::Domain::LocationId);
        for col in zone_columns {
            let ids = batch
                .column(schema.index_of(col.name).unwrap())
                .as_primitive::<Int32Type>()
                .clone();
            assert!(
                ids.iter().flatten().all(|id| (1..=265).contains(&id)),
                "{kind} {}",
                col.name
            );
        }
    }
    let share_in = |kind: TripKind, ids: &[i32]| {
        let batch = all_rows(&TripGenerator::new(kind, month("2021-01")), 20_000);
        let pu = batch
            .column_by_name("PULocationID")
            .unwrap()
            .as_primitive::<Int32Type>()
            .clone();
        pu.iter().flatten().filter(|id| ids.contains(id)).count() as f64 / pu.len() as f64
    };
    let yellow_zone: Vec<i32> = zones::zones()
        .iter()
        .filter(|z| z.service_zone == "Yellow Zone")
        .map(|z| z.id)
        .collect();
    assert!(
        share_in(TripKind::Yellow, &yellow_zone) > 0.8,
        "yellow cabs mostly pick up in Manhattan"
    );
    assert!(
        share_in(TripKind::Yellow, &[132, 138]) > 0.02,
        "and at the airports"
    );
    assert!(
        share_in(TripKind::Green, &yellow_zone) < 0.02,
        "green cabs rarely pick up below 110th st"
    );
    assert!(
        share_in(TripKind::Yellow, &[264, 265]) < 0.01,
        "unknown zones are rare"
    );
}

#[test]
fn null_patterns_match_the_real_files() {
    let batch = all_rows(
        &TripGenerator::new(TripKind::Yellow, month("2021-01")),
        20_000,
    );
    let nulls = |name: &str| batch.column_by_name(name).unwrap().logical_nulls();
    let passengers = nulls("passenger_count").expect("some passenger counts are null");
    let share = passengers.null_count() as f64 / batch.num_rows() as f64;
    assert!(
        (0.03..0.05).contains(&share),
        "null passenger_count share {share}"
    );
    for name in [
        "RatecodeID",
        "store_and_fwd_flag",
        "payment_type",
        "congestion_surcharge",
        "airport_fee",
    ] {
        assert_eq!(
            nulls(name).as_ref(),
            Some(&passengers),
            "{name} is null together with passenger_count"
        );
    }
    assert_eq!(batch.column_by_name("VendorID").unwrap().null_count(), 0);
    assert_eq!(
        batch
            .column_by_name("cbd_congestion_fee")
            .unwrap()
            .null_count(),
        batch.num_rows()
    );

    let before_2020 = all_rows(
        &TripGenerator::new(TripKind::Yellow, month("2019-06")),
        5_000,
    );
    assert_eq!(
        before_2020
            .column_by_name("passenger_count")
            .unwrap()
            .null_count(),
        0
    );

    let green = all_rows(
        &TripGenerator::new(TripKind::Green, month("2021-01")),
        5_000,
    );
    assert_eq!(
        green.column_by_name("ehail_fee").unwrap().null_count(),
        5_000
    );
    assert!(green.column_by_name("trip_type").unwrap().null_count() > 0);

    let fhv = all_rows(&TripGenerator::new(TripKind::Fhv, month("2021-01")), 20_000);
    for (name, lo, hi) in [
        ("PUlocationID", 0.6, 0.85),
        ("DOlocationID", 0.1, 0.2),
        ("SR_Flag", 0.9, 1.0),
    ] {
        let share = fhv.column_by_name(name).unwrap().null_count() as f64 / 20_000.0;
        assert!((lo..hi).contains(&share), "fhv {name} null share {share}");
    }
}

#[test]
fn for_hire_rows_look_like_the_tlc_ones() {
    let (text, _) = csv_text(&TripGenerator::new(TripKind::Fhv, month("2021-01")), 2_000);
    for line in text.lines().skip(1) {
        let base = line.split(',').next().unwrap();
        assert!(
            base.len() == 6
                && base.starts_with('B')
                && base[1..].bytes().all(|b| b.is_ascii_digit()),
            "{line}"
        );
    }

    let batch = all_rows(
        &TripGenerator::new(TripKind::Fhvhv, month("2021-01")),
        20_000,
    );
    let licenses = batch
        .column_by_name("hvfhs_license_num")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let uber = licenses.iter().filter(|l| *l == Some("HV0003")).count();
    assert!(uber > 12_000, "Uber has most trips: {uber}");
    assert!(
        licenses
            .iter()
            .all(|l| matches!(l, Some("HV0002" | "HV0003" | "HV0004" | "HV0005")))
    );
    let request = timestamps(&batch, "request_datetime");
    let on_scene = timestamps(&batch, "on_scene_datetime");
    let pickup = timestamps(&batch, "pickup_datetime");
    let dropoff = timestamps(&batch, "dropoff_datetime");
    let trip_time = opt_i64(&batch, "trip_time");
    for row in 0..batch.num_rows() {
        assert!(request[row].unwrap() < pickup[row].unwrap());
        if let Some(on_scene) = on_scene[row] {
            assert!(request[row].unwrap() < on_scene && on_scene <= pickup[row].unwrap());
        }
        assert_eq!(
            trip_time[row].unwrap() * 1_000_000,
            dropoff[row].unwrap() - pickup[row].unwrap()
        );
    }
    for flag in [
        "shared_request_flag",
        "shared_match_flag",
        "access_a_ride_flag",
        "wav_request_flag",
    ] {
        let values = batch
            .column_by_name(flag)
            .unwrap()
            .as_string::<i32>()
            .clone();
        assert!(
            values.iter().all(|v| matches!(v, Some("N" | "Y"))),
            "{flag}"
        );
        assert!(
            values.iter().filter(|v| *v == Some("N")).count() > 19_000,
            "{flag} is mostly N"
        );
    }
}

#[test]
fn the_zone_lookup_has_265_plausible_rows() {
    let generator = TripGenerator::new(TripKind::Zones, month("2021-01"));
    let (text, report) = csv_text(&generator, 10);
    assert_eq!(report.rows, 265, "the row count is ignored for zones");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 266);
    assert_eq!(lines[1], r#"1,"EWR","Newark Airport","EWR""#);
    assert_eq!(lines[132], r#"132,"Queens","JFK Airport","Airports""#);
    assert_eq!(lines[138], r#"138,"Queens","LaGuardia Airport","Airports""#);
    assert_eq!(lines[264], r#"264,"Unknown","NV","N/A""#);
    assert_eq!(lines[265], r#"265,"N/A","Outside of NYC","N/A""#);
    assert!(lines[4].starts_with(r#"4,"Manhattan","#) && lines[4].ends_with(r#","Yellow Zone""#));
    assert!(lines[7].starts_with(r#"7,"Queens","#) && lines[7].ends_with(r#","Boro Zone""#));
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(line.starts_with(&format!("{},\"", i + 1)), "{line}");
        assert_eq!(line.matches('"').count(), 6, "{line}");
    }
    let batch = all_rows(&generator, 0);
    assert_eq!(batch.num_rows(), 265);
    let other_month = TripGenerator::new(TripKind::Zones, month("2019-01")).with_seed(1);
    assert_eq!(
        csv_text(&other_month, 265).0,
        text,
        "zones do not depend on month or seed"
    );
}

#[test]
fn dirty_csv_rows_are_counted_exactly_and_really_invalid() {
    for kind in TripKind::ALL {
        let generator = TripGenerator::new(kind, month("2021-02")).with_dirty_rate(0.3);
        let (text, report) = csv_text(&generator, 3_000);
        let invalid = invalid_csv_rows(kind, &text);
        assert_eq!(invalid, report.dirty_rows, "{kind}");
        let rows = report.rows as f64;
        assert!(
            report.dirty_rows as f64 > rows * 0.2 && (report.dirty_rows as f64) < rows * 0.4,
            "{kind}"
        );
    }
}

#[test]
fn every_kind_of_csv_defect_appears() {
    let generator = TripGenerator::new(TripKind::Yellow, month("2021-02")).with_dirty_rate(0.5);
    let (text, _) = csv_text(&generator, 1_000);
    assert!(text.contains(",abc,"), "non-numeric money");
    assert!(text.contains(" 25:61:00,"), "impossible timestamp");
    assert!(text.contains(",999,"), "zone out of range");
    assert!(
        text.lines().any(|l| l.split(',').count() == 17),
        "one field missing"
    );
    assert!(
        text.lines().any(|l| l.split(',').nth(3) == Some("1.5")),
        "fractional passenger count"
    );
}

#[test]
fn clean_csv_rows_always_validate() {
    for kind in TripKind::ALL {
        for m in ["2019-01", "2021-01", "2025-03"] {
            let (text, report) = csv_text(&TripGenerator::new(kind, month(m)).with_seed(11), 3_000);
            assert_eq!(report.dirty_rows, 0);
            assert_eq!(invalid_csv_rows(kind, &text), 0, "{kind} {m}");
        }
    }
}

#[test]
fn dirty_parquet_rows_have_zone_ids_out_of_range() {
    for kind in TripKind::ALL {
        let generator = TripGenerator::new(kind, month("2021-02")).with_dirty_rate(0.05);
        let (dir, _, report) = generate(&generator, 5_000, OutputFormat::Parquet);
        let batch = read_parquet(&dir);
        let zone_columns: Vec<_> = kind
            .columns()
            .iter()
            .filter(|c| c.domain == tripline_core::schema::Domain::LocationId)
            .map(|c| {
                batch
                    .column_by_name(c.name)
                    .unwrap()
                    .as_primitive::<Int32Type>()
                    .clone()
            })
            .collect();
        let bad = (0..batch.num_rows())
            .filter(|&row| {
                zone_columns
                    .iter()
                    .any(|c| c.is_valid(row) && !(1..=265).contains(&c.value(row)))
            })
            .count() as u64;
        assert_eq!(bad, report.dirty_rows, "{kind}");
        if kind != TripKind::Zones {
            assert!(bad > 100, "{kind}: {bad}");
        }
    }
}

#[test]
fn a_dirty_rate_outside_zero_to_one_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.csv");
    let err = TripGenerator::new(TripKind::Yellow, month("2021-01"))
        .with_dirty_rate(1.5)
        .write(10, OutputFormat::Csv, &path)
        .unwrap_err();
    assert!(
        err.to_string().contains("x.csv") && err.to_string().contains("1.5"),
        "{err}"
    );
    assert_eq!(err.domain(), ErrorDomain::User);
    assert!(!path.exists());
}

#[test]
fn output_formats_parse_and_print_their_names() {
    for name in ["csv", "csv.gz", "parquet"] {
        assert_eq!(name.parse::<OutputFormat>().unwrap().to_string(), name);
    }
    assert_eq!(
        "CSV.GZ".parse::<OutputFormat>().unwrap(),
        OutputFormat::CsvGz
    );
    assert!(
        "json"
            .parse::<OutputFormat>()
            .unwrap_err()
            .to_string()
            .contains("expected csv, csv.gz or parquet")
    );
    assert_eq!(
        OutputFormat::from_path(Path::new("a/yellow_2021-01.csv.gz")),
        Some(OutputFormat::CsvGz)
    );
    assert_eq!(
        OutputFormat::from_path(Path::new("a/yellow_2021-01.CSV")),
        Some(OutputFormat::Csv)
    );
    assert_eq!(
        OutputFormat::from_path(Path::new("yellow.parquet")),
        Some(OutputFormat::Parquet)
    );
    assert_eq!(OutputFormat::from_path(Path::new("yellow.json")), None);
}

#[test]
fn write_creates_parent_directories_and_reports_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw/yellow/yellow_tripdata_2021-01.csv");
    let report = TripGenerator::new(TripKind::Yellow, month("2021-01"))
        .write(100, OutputFormat::Csv, &path)
        .unwrap();
    assert_eq!(report.path, path);
    assert_eq!(report.rows, 100);
    assert_eq!(
        report.bytes,
        File::open(&path).unwrap().metadata().unwrap().len()
    );
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 101);
}

/// Count the data rows of a CSV text that a strict reader must reject: wrong column count, or a value that does
/// not parse as its column's type or breaks its domain.
fn invalid_csv_rows(kind: TripKind, text: &str) -> u64 {
    let mut lines = text.lines();
    let header: Vec<&tripline_core::ColumnSpec> = lines
        .next()
        .unwrap()
        .split(',')
        .map(|h| &kind.columns()[kind.find_column(h.trim_matches('"')).expect("known column")])
        .collect();
    let valid = |line: &str| {
        let fields: Vec<&str> = line.split(',').collect();
        fields.len() == header.len()
            && fields.iter().zip(&header).all(|(value, spec)| {
                let value = value.trim_matches('"');
                value.is_empty()
                    || match spec.ty {
                        ColumnType::Int32 | ColumnType::Int64 => value
                            .parse::<i64>()
                            .is_ok_and(|v| spec.domain.check_int(v).is_ok()),
                        ColumnType::Float64 => value.parse::<f64>().is_ok_and(f64::is_finite),
                        ColumnType::Timestamp => parse_timestamp(value).is_some(),
                        ColumnType::Utf8 => true,
                    }
            })
    };
    lines.filter(|line| !valid(line)).count() as u64
}

/// A money column as integer cents.
fn cents_column(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    if column.data_type() == &arrow::datatypes::DataType::Null {
        return vec![None; column.len()];
    }
    column
        .as_primitive::<Float64Type>()
        .iter()
        .map(|v| v.map(|v| (v * 100.0).round() as i64))
        .collect()
}

fn opt_i64(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

fn timestamps(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect()
}
