//! The TLC's CSV-era text layout: headers per kind, `2021-01-01 00:30:10` timestamps, money in its shortest form
//! (`8`, `11.8`, `0.5`), empty fields for nulls; and the ways a CSV row is made invalid on purpose.

use tripline_core::TripKind;
use tripline_core::time::{MICROS_PER_DAY, MICROS_PER_SECOND, format_timestamp};

use crate::rng::Rng;
use crate::trips::{FhvTrip, HvTrip, TaxiTrip, Trip, zone_at};

/// The header line (without newline) of a kind's CSV files, as the TLC published them.
pub(crate) fn header(kind: TripKind) -> &'static str {
    match kind {
        TripKind::Yellow => {
            "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,\
             store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,\
             tolls_amount,improvement_surcharge,total_amount,congestion_surcharge"
        }
        TripKind::Green => {
            "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,RatecodeID,PULocationID,\
             DOLocationID,passenger_count,trip_distance,fare_amount,extra,mta_tax,tip_amount,tolls_amount,\
             ehail_fee,improvement_surcharge,total_amount,payment_type,trip_type,congestion_surcharge"
        }
        TripKind::Fhv => {
            "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,DOlocationID,SR_Flag,\
             Affiliated_base_number"
        }
        TripKind::Fhvhv => {
            "hvfhs_license_num,dispatching_base_num,pickup_datetime,dropoff_datetime,PULocationID,\
             DOLocationID,SR_Flag"
        }
        TripKind::Zones => "\"LocationID\",\"Borough\",\"Zone\",\"service_zone\"",
    }
}

/// How a CSV row is made invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Defect {
    /// `abc` in a numeric column.
    NotANumber,
    /// `YYYY-MM-32 25:61:00` in the pickup timestamp.
    ImpossibleTimestamp,
    /// One field left out, so the row has one column too few.
    MissingField,
    /// `999` as a zone ID.
    ZoneOutOfRange,
    /// `1.5` in an integer column.
    FractionalInteger,
}

const TRIP_DEFECTS: &[Defect] = &[
    Defect::NotANumber,
    Defect::ImpossibleTimestamp,
    Defect::MissingField,
    Defect::ZoneOutOfRange,
    Defect::FractionalInteger,
];
const ZONE_DEFECTS: &[Defect] = &[
    Defect::NotANumber,
    Defect::MissingField,
    Defect::ZoneOutOfRange,
    Defect::FractionalInteger,
];

/// Which CSV column each defect lands in, per kind.
struct DefectColumns {
    not_a_number: usize,
    timestamp: usize,
    zones: [usize; 2],
    integer: usize,
}

fn defect_columns(kind: TripKind) -> DefectColumns {
    match kind {
        // fare_amount, pickup, PU/DO, passenger_count
        TripKind::Yellow => DefectColumns {
            not_a_number: 10,
            timestamp: 1,
            zones: [7, 8],
            integer: 3,
        },
        TripKind::Green => DefectColumns {
            not_a_number: 9,
            timestamp: 1,
            zones: [5, 6],
            integer: 7,
        },
        // no money in these files: the pickup zone gets the text; SR_Flag the fraction
        TripKind::Fhv => DefectColumns {
            not_a_number: 3,
            timestamp: 1,
            zones: [3, 4],
            integer: 5,
        },
        TripKind::Fhvhv => DefectColumns {
            not_a_number: 4,
            timestamp: 2,
            zones: [4, 5],
            integer: 6,
        },
        TripKind::Zones => DefectColumns {
            not_a_number: 0,
            timestamp: 0,
            zones: [0, 0],
            integer: 0,
        },
    }
}

/// Days of formatted dates kept by a [`Line`]: more than a month, so a month's file formats each date once.
const DATE_CACHE_DAYS: usize = 64;

/// One CSV line being built: its bytes and where each field starts, reused from row to row.
pub(crate) struct Line {
    pub(crate) buf: Vec<u8>,
    starts: Vec<usize>,
    /// `YYYY-MM-DD ` prefixes of recent days, direct-mapped by day number: pickups jump between days.
    dates: Vec<(i64, [u8; 11])>,
    scratch: String,
}

impl Line {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(256),
            starts: Vec::with_capacity(32),
            dates: vec![(i64::MIN, [0; 11]); DATE_CACHE_DAYS],
            scratch: String::with_capacity(32),
        }
    }

    /// Format `trip` as a line of `kind`'s CSV, with its newline.
    pub(crate) fn write_trip(&mut self, kind: TripKind, trip: &Trip) {
        self.buf.clear();
        self.starts.clear();
        match trip {
            Trip::Taxi(t) if kind == TripKind::Green => self.green(t),
            Trip::Taxi(t) => self.yellow(t),
            Trip::Fhv(t) => self.fhv(t),
            Trip::Hv(t) => self.fhvhv(t),
            Trip::Zone(z) => {
                let zone = zone_at(z.index);
                self.int(i64::from(z.id));
                self.quoted(zone.borough.name());
                self.quoted(&zone.name);
                self.quoted(zone.service_zone);
            }
        }
        self.buf.push(b'\n');
    }

    fn yellow(&mut self, t: &TaxiTrip) {
        self.int(i64::from(t.vendor));
        self.timestamp(t.pickup);
        self.timestamp(t.dropoff);
        self.opt_int(t.passengers);
        self.cents(t.distance);
        self.opt_int(t.rate_code);
        self.flag(t.store_and_fwd);
        self.int(i64::from(t.pu));
        self.int(i64::from(t.dz));
        self.opt_int(t.payment);
        self.cents(t.fare);
        self.cents(t.extra);
        self.cents(t.mta_tax);
        self.cents(t.tip);
        self.cents(t.tolls);
        self.cents(t.improvement);
        self.cents(t.total);
        self.opt_cents(t.congestion);
    }

    fn green(&mut self, t: &TaxiTrip) {
        self.int(i64::from(t.vendor));
        self.timestamp(t.pickup);
        self.timestamp(t.dropoff);
        self.flag(t.store_and_fwd);
        self.opt_int(t.rate_code);
        self.int(i64::from(t.pu));
        self.int(i64::from(t.dz));
        self.opt_int(t.passengers);
        self.cents(t.distance);
        self.cents(t.fare);
        self.cents(t.extra);
        self.cents(t.mta_tax);
        self.cents(t.tip);
        self.cents(t.tolls);
        self.field(); // ehail_fee: always empty
        self.cents(t.improvement);
        self.cents(t.total);
        self.opt_int(t.payment);
        self.opt_int(t.trip_type);
        self.opt_cents(t.congestion);
    }

    fn fhv(&mut self, t: &FhvTrip) {
        self.base(Some(t.base));
        self.timestamp(t.pickup);
        self.timestamp(t.dropoff);
        self.opt_int(t.pu.map(i64::from));
        self.opt_int(t.dz.map(i64::from));
        self.opt_int(t.sr_flag.map(i64::from));
        self.base(t.affiliated);
    }

    fn fhvhv(&mut self, t: &HvTrip) {
        self.field();
        self.buf.extend_from_slice(b"HV000");
        self.buf.push(b'0' + t.license);
        self.base(Some(t.base));
        self.timestamp(t.pickup);
        self.timestamp(t.dropoff);
        self.int(i64::from(t.pu));
        self.int(i64::from(t.dz));
        self.opt_int(t.sr_flag.map(i64::from));
    }

    /// Start a new field.
    fn field(&mut self) {
        if !self.starts.is_empty() {
            self.buf.push(b',');
        }
        self.starts.push(self.buf.len());
    }

    fn int(&mut self, v: i64) {
        self.field();
        push_int(&mut self.buf, v);
    }

    fn opt_int(&mut self, v: Option<i64>) {
        self.field();
        if let Some(v) = v {
            push_int(&mut self.buf, v);
        }
    }

    fn cents(&mut self, v: i64) {
        self.field();
        push_cents(&mut self.buf, v);
    }

    fn opt_cents(&mut self, v: Option<i64>) {
        self.field();
        if let Some(v) = v {
            push_cents(&mut self.buf, v);
        }
    }

    fn flag(&mut self, v: Option<bool>) {
        self.field();
        match v {
            Some(true) => self.buf.push(b'Y'),
            Some(false) => self.buf.push(b'N'),
            None => {}
        }
    }

    fn base(&mut self, number: Option<u16>) {
        self.field();
        if let Some(n) = number {
            self.buf.push(b'B');
            let n = u32::from(n);
            for div in [10_000, 1_000, 100, 10, 1] {
                self.buf.push(b'0' + (n / div % 10) as u8);
            }
        }
    }

    fn quoted(&mut self, s: &str) {
        self.field();
        self.buf.push(b'"');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(b'"');
    }

    /// `YYYY-MM-DD HH:MM:SS`; the date part comes from `format_timestamp` once per day.
    fn timestamp(&mut self, micros: i64) {
        self.field();
        let day = micros.div_euclid(MICROS_PER_DAY);
        let slot = &mut self.dates[day.rem_euclid(DATE_CACHE_DAYS as i64) as usize];
        if slot.0 != day {
            self.scratch.clear();
            format_timestamp(day * MICROS_PER_DAY, &mut self.scratch);
            slot.1.copy_from_slice(&self.scratch.as_bytes()[..11]);
            slot.0 = day;
        }
        self.buf.extend_from_slice(&slot.1);
        let secs = micros.rem_euclid(MICROS_PER_DAY) / MICROS_PER_SECOND;
        for (i, v) in [secs / 3600, secs / 60 % 60, secs % 60]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                self.buf.push(b':');
            }
            self.buf.push(b'0' + (v / 10) as u8);
            self.buf.push(b'0' + (v % 10) as u8);
        }
    }

    /// Byte range of field `k` (without its comma or the newline).
    fn span(&self, k: usize) -> std::ops::Range<usize> {
        let end = match self.starts.get(k + 1) {
            Some(&next) => next - 1,
            None => self.buf.len() - 1,
        };
        self.starts[k]..end
    }

    fn replace(&mut self, k: usize, value: &[u8]) {
        let span = self.span(k);
        self.buf.splice(span, value.iter().copied());
    }

    /// Drop field `k` and one comma next to it.
    fn remove(&mut self, k: usize) {
        let span = self.span(k);
        let cut = if k + 1 < self.starts.len() {
            span.start..span.end + 1
        } else {
            span.start - 1..span.end
        };
        self.buf.drain(cut);
    }

    /// Make this (finished) line invalid in one way drawn from `rng`.
    pub(crate) fn spoil(&mut self, kind: TripKind, rng: &mut Rng) -> Defect {
        let defects = if kind == TripKind::Zones {
            ZONE_DEFECTS
        } else {
            TRIP_DEFECTS
        };
        let defect = defects[rng.below(defects.len() as u64) as usize];
        let cols = defect_columns(kind);
        match defect {
            Defect::NotANumber => self.replace(cols.not_a_number, b"abc"),
            Defect::ZoneOutOfRange => {
                let k = cols.zones[rng.below(2) as usize];
                self.replace(k, b"999");
            }
            Defect::FractionalInteger => self.replace(cols.integer, b"1.5"),
            Defect::ImpossibleTimestamp => {
                let span = self.span(cols.timestamp);
                let mut value = self.buf[span.start..span.start + 8].to_vec();
                let day: &[u8] = if &value[5..7] == b"02" { b"30" } else { b"32" };
                value.extend_from_slice(day);
                value.extend_from_slice(b" 25:61:00");
                self.replace(cols.timestamp, &value);
            }
            Defect::MissingField => {
                let k = rng.below(self.starts.len() as u64) as usize;
                self.remove(k);
            }
        }
        defect
    }
}

fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

fn push_int(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Hundredths in their shortest decimal form: 800 -> `8`, 1180 -> `11.8`, 50 -> `0.5`, 1225 -> `12.25`.
fn push_cents(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    let v = v.unsigned_abs();
    push_u64(buf, v / 100);
    let fraction = v % 100;
    if fraction != 0 {
        buf.push(b'.');
        buf.push(b'0' + (fraction / 10) as u8);
        if !fraction.is_multiple_of(10) {
            buf.push(b'0' + (fraction % 10) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tripline_core::time::parse_timestamp;

    fn cents(v: i64) -> String {
        let mut buf = Vec::new();
        push_cents(&mut buf, v);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn money_is_written_in_its_shortest_form() {
        assert_eq!(cents(800), "8");
        assert_eq!(cents(1180), "11.8");
        assert_eq!(cents(50), "0.5");
        assert_eq!(cents(1225), "12.25");
        assert_eq!(cents(5), "0.05");
        assert_eq!(cents(0), "0");
        assert_eq!(cents(-250), "-2.5");
        for v in [1, 7, 99, 100, 101, 1234567] {
            assert_eq!(cents(v).parse::<f64>().unwrap(), v as f64 / 100.0, "{v}");
        }
    }

    #[test]
    fn timestamps_match_the_core_formatter() {
        let mut line = Line::new();
        let mut rng = Rng::for_row(1, 2);
        for _ in 0..2_000 {
            let micros = rng.int(1_500_000_000, 1_800_000_000) * MICROS_PER_SECOND;
            line.buf.clear();
            line.starts.clear();
            line.timestamp(micros);
            let mut expected = String::new();
            format_timestamp(micros, &mut expected);
            assert_eq!(std::str::from_utf8(&line.buf).unwrap(), expected);
            assert_eq!(parse_timestamp(&expected), Some(micros));
        }
    }

    #[test]
    fn a_missing_field_leaves_one_column_fewer() {
        for k in 0..3 {
            let mut line = Line::new();
            line.int(1);
            line.int(22);
            line.int(333);
            line.buf.push(b'\n');
            line.remove(k);
            let text = String::from_utf8(line.buf).unwrap();
            assert_eq!(text.trim_end().split(',').count(), 2, "{text:?}");
            assert!(text.ends_with('\n'));
        }
    }
}
