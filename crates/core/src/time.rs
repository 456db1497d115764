//! Calendar arithmetic on the naive timestamps the TLC publishes (`2021-01-31 23:59:59`, no time zone), stored as
//! microseconds since 1970-01-01 00:00:00. Small and exact: no time zone database is involved.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;
/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// A calendar month, the unit the TLC publishes files in and the lake partitions by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct YearMonth {
    /// Year, e.g. 2021.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u32,
}

impl YearMonth {
    /// A month from its parts; `None` when `month` is not 1..=12.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (1..=12).contains(&month).then_some(Self { year, month })
    }

    /// Number of days in the month.
    pub fn days(self) -> u32 {
        match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if is_leap(self.year) => 29,
            _ => 28,
        }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                month: self.month + 1,
                ..self
            }
        }
    }

    /// First instant of the month, in microseconds since the epoch.
    pub fn start_micros(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * MICROS_PER_DAY
    }

    /// First instant of the next month, in microseconds since the epoch.
    pub fn end_micros(self) -> i64 {
        self.next().start_micros()
    }

    /// The month a timestamp falls in.
    pub fn of_micros(micros: i64) -> Self {
        let (y, m, _) = civil_from_days(micros.div_euclid(MICROS_PER_DAY));
        Self { year: y, month: m }
    }

    /// Find a `YYYY-MM` in a file name or URL such as `yellow_tripdata_2021-01.csv.gz` (the last one wins).
    pub fn find_in(name: &str) -> Option<Self> {
        let b = name.as_bytes();
        (0..b.len().saturating_sub(6)).rev().find_map(|i| {
            let w = &b[i..i + 7];
            let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
            let boundary_before = i == 0 || !b[i - 1].is_ascii_digit();
            let boundary_after = b.get(i + 7).is_none_or(|c| !c.is_ascii_digit());
            if digits(0..4) && w[4] == b'-' && digits(5..7) && boundary_before && boundary_after {
                name[i..i + 7].parse().ok()
            } else {
                None
            }
        })
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a month: expected YYYY-MM, e.g. 2021-01");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        Self::new(year, month).ok_or_else(bad)
    }
}

impl TryFrom<String> for YearMonth {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<YearMonth> for String {
    fn from(m: YearMonth) -> String {
        m.to_string()
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// Parse a TLC timestamp: `YYYY-MM-DD HH:MM:SS` with an optional fraction, `T` also accepted as the separator.
/// Returns microseconds since the epoch, or `None` when the text is not a valid timestamp (bad calendar dates
/// like February 30th included).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    parse_timestamp_bytes(s.trim().as_bytes())
}

/// [`parse_timestamp`] on bytes that are already trimmed (the CSV hot path: no UTF-8 check needed).
pub fn parse_timestamp_bytes(b: &[u8]) -> Option<i64> {
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)? as i32, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let month = YearMonth::new(y, mo)?;
    if d == 0 || d > month.days() || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0i64;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 || b.len() > 26 {
            return None;
        }
        let frac = num(20..b.len())?;
        micros = i64::from(frac) * 10i64.pow(26 - b.len() as u32);
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    Some(secs * MICROS_PER_SECOND + micros)
}

/// Format microseconds since the epoch the way the TLC's CSV files do: `2021-01-31 23:59:59`.
pub fn format_timestamp(micros: i64, out: &mut String) {
    use std::fmt::Write;
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY) / MICROS_PER_SECOND;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_text() {
        for s in [
            "1970-01-01 00:00:00",
            "2021-01-01 00:30:10",
            "2020-02-29 23:59:59",
            "2024-12-31 12:00:01",
        ] {
            let micros = parse_timestamp(s).unwrap();
            let mut out = String::new();
            format_timestamp(micros, &mut out);
            assert_eq!(out, s);
        }
        assert_eq!(
            parse_timestamp("2021-01-01 00:00:01"),
            Some(1_609_459_201_000_000)
        );
        assert_eq!(
            parse_timestamp("2021-01-01T00:00:01.5"),
            Some(1_609_459_201_500_000)
        );
    }

    #[test]
    fn impossible_timestamps_are_rejected() {
        for s in [
            "2021-02-29 00:00:00",
            "2021-13-01 00:00:00",
            "2021-01-01 24:00:00",
            "2021-01-01",
            "abc",
            "",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn months_are_found_in_file_names() {
        let m = |s: &str| YearMonth::find_in(s).map(|m| m.to_string());
        assert_eq!(
            m("yellow_tripdata_2021-01.csv.gz").as_deref(),
            Some("2021-01")
        );
        assert_eq!(
            m("https://x/trip-data/fhv_tripdata_2019-12.parquet").as_deref(),
            Some("2019-12")
        );
        assert_eq!(
            m("rides_yellow_2020-07_head265.csv").as_deref(),
            Some("2020-07")
        );
        assert_eq!(m("taxi_zone_lookup.csv"), None);
        assert_eq!(m("data_2021-13.csv"), None);
    }

    #[test]
    fn month_bounds_cover_exactly_the_month() {
        let feb: YearMonth = "2024-02".parse().unwrap();
        assert_eq!(feb.end_micros() - feb.start_micros(), 29 * MICROS_PER_DAY);
        assert_eq!(YearMonth::of_micros(feb.end_micros() - 1), feb);
        assert_eq!(YearMonth::of_micros(feb.end_micros()), feb.next());
        assert!("2024-2".parse::<YearMonth>().is_err());
    }
}
