//! When trips start: every day of the month, weighted by weekday, with an hour-of-day profile (quiet 2-5 am,
//! morning and evening rush on weekdays, late nights on weekends), plus the travel speed of each hour.

use tripline_core::YearMonth;
use tripline_core::time::{MICROS_PER_DAY, MICROS_PER_SECOND, days_from_civil};

use crate::rng::{Rng, Weighted};

/// Share of pickups that fall just outside the month (on the last day of the previous month), as in real files.
pub(crate) const OUTSIDE_MONTH_SHARE: f64 = 0.001;

/// Relative pickups per hour on Monday to Friday.
const WEEKDAY_HOURS: [f64; 24] = [
    2.4, 1.5, 0.9, 0.6, 0.6, 1.0, 2.4, 4.2, 5.6, 5.2, 4.6, 4.7, 5.0, 5.1, 5.4, 5.6, 5.6, 6.4, 7.0,
    6.2, 5.4, 5.2, 4.9, 3.8,
];
/// Relative pickups per hour on Saturday and Sunday.
const WEEKEND_HOURS: [f64; 24] = [
    4.6, 3.9, 3.0, 2.2, 1.2, 0.8, 0.9, 1.3, 2.0, 3.0, 4.0, 4.8, 5.3, 5.5, 5.6, 5.6, 5.5, 5.6, 5.8,
    5.5, 5.0, 5.0, 5.2, 5.0,
];
/// Relative volume per weekday, Monday first.
const WEEKDAY_VOLUME: [f64; 7] = [0.92, 1.0, 1.03, 1.08, 1.1, 1.02, 0.86];
/// Typical street speed in miles per hour at each hour on weekdays.
const SPEED_MPH: [f64; 24] = [
    16.0, 17.0, 18.0, 19.0, 20.0, 19.0, 16.0, 12.0, 10.0, 10.0, 10.5, 10.5, 10.5, 10.5, 10.0, 9.5,
    9.0, 8.5, 9.0, 10.5, 12.0, 13.0, 14.0, 15.0,
];

/// A pickup instant and what the rest of the trip needs to know about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pickup {
    /// Microseconds since the epoch.
    pub(crate) micros: i64,
    /// Hour of day, 0..=23.
    pub(crate) hour: usize,
    /// Saturday or Sunday.
    pub(crate) weekend: bool,
}

impl Pickup {
    /// Weekday rush hour, 4 pm to 8 pm: the peak surcharge applies.
    pub(crate) fn is_peak(&self) -> bool {
        !self.weekend && (16..20).contains(&self.hour)
    }

    /// 8 pm to 6 am: the overnight surcharge applies.
    pub(crate) fn is_overnight(&self) -> bool {
        self.hour >= 20 || self.hour < 6
    }

    /// Typical door-to-door speed for a trip of `miles` starting now: longer trips use highways.
    pub(crate) fn speed_mph(&self, miles: f64) -> f64 {
        let street = SPEED_MPH[self.hour] * if self.weekend { 1.15 } else { 1.0 };
        street * (1.0 + miles.min(20.0) / 20.0 * 0.7)
    }
}

/// Draws pickup instants within one month.
#[derive(Debug, Clone)]
pub(crate) struct PickupClock {
    /// First day of the month, days since the epoch.
    first_day: i64,
    /// (day of month from 0, hour) slots.
    slots: Weighted<(u16, u8)>,
}

impl PickupClock {
    pub(crate) fn new(month: YearMonth) -> Self {
        let first_day = days_from_civil(month.year, month.month, 1);
        let slots = Weighted::new((0..month.days() as u16).flat_map(|d| {
            let (weekday, weekend) = weekday(first_day + i64::from(d));
            let hours = if weekend {
                &WEEKEND_HOURS
            } else {
                &WEEKDAY_HOURS
            };
            (0..24u8).map(move |h| ((d, h), WEEKDAY_VOLUME[weekday] * hours[h as usize]))
        }));
        Self { first_day, slots }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> Pickup {
        let (day, hour) = if rng.chance(OUTSIDE_MONTH_SHARE) {
            (self.first_day - 1, rng.below(24) as u8)
        } else {
            let (d, h) = self.slots.sample(rng);
            (self.first_day + i64::from(d), h)
        };
        let second = rng.below(3600) as i64;
        let micros = day * MICROS_PER_DAY + (i64::from(hour) * 3600 + second) * MICROS_PER_SECOND;
        Pickup {
            micros,
            hour: usize::from(hour),
            weekend: weekday(day).1,
        }
    }
}

/// (weekday with Monday = 0, is Saturday or Sunday) of a day number; 1970-01-01 was a Thursday.
fn weekday(day: i64) -> (usize, bool) {
    let wd = (day + 3).rem_euclid(7) as usize;
    (wd, wd >= 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_are_counted_from_monday() {
        assert_eq!(
            weekday(days_from_civil(2021, 1, 4)),
            (0, false),
            "2021-01-04 was a Monday"
        );
        assert_eq!(
            weekday(days_from_civil(2021, 1, 3)),
            (6, true),
            "2021-01-03 was a Sunday"
        );
    }

    #[test]
    fn hour_profile_has_a_quiet_night_and_an_evening_peak() {
        let month: YearMonth = "2021-03".parse().unwrap();
        let clock = PickupClock::new(month);
        let mut rng = Rng::for_row(9, 9);
        let mut per_hour = [0u32; 24];
        let mut per_day = [0u32; 31];
        for _ in 0..100_000 {
            let p = clock.sample(&mut rng);
            per_hour[p.hour] += 1;
            if p.micros >= month.start_micros() {
                per_day[((p.micros - month.start_micros()) / MICROS_PER_DAY) as usize] += 1;
            }
        }
        assert!(per_hour[4] * 4 < per_hour[18], "{per_hour:?}");
        assert!(per_hour[3] < per_hour[8]);
        assert!(
            per_day.iter().all(|&n| n > 2_000),
            "every day has pickups: {per_day:?}"
        );
    }
}
