//! One synthetic row of each kind: where and when the trip went, and what it cost under the rules of its month.
//! Money is kept in integer cents so `total_amount` is the exact sum of its parts.

use tripline_core::time::MICROS_PER_SECOND;
use tripline_core::{TripKind, YearMonth};

use crate::clock::{Pickup, PickupClock};
use crate::rng::{Rng, Weighted};
use crate::zones::{self, Area, Borough, EWR, JFK, LGA, Pattern, ZONE_COUNT, ZoneSampler, zone};

/// Share of yellow/green rows from 2020 on whose passenger count, rate code, store-and-forward flag, payment
/// type and surcharges are all null, as in the real files.
pub(crate) const NULL_PATTERN_SHARE: f64 = 0.04;

/// A month as a number that orders months: `year * 12 + month - 1`.
const fn ordinal(year: i32, month: u32) -> i32 {
    year * 12 + month as i32 - 1
}

/// The fare rules and columns in force in a month.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Era {
    ordinal: i32,
}

impl Era {
    fn new(month: YearMonth) -> Self {
        Self {
            ordinal: ordinal(month.year, month.month),
        }
    }

    fn since(self, year: i32, month: u32) -> bool {
        self.ordinal >= ordinal(year, month)
    }

    /// The December 2022 fare increase: new meter, improvement surcharge and peak/overnight extras.
    fn new_fares(self) -> bool {
        self.since(2022, 12)
    }

    /// Metered fare: (initial charge, charge per 1/5 mile or per slow minute), in cents.
    fn meter(self) -> (i64, i64) {
        if self.new_fares() {
            (300, 70)
        } else {
            (250, 50)
        }
    }

    /// Flat JFK - Manhattan fare, in cents.
    fn jfk_flat(self) -> i64 {
        if self.new_fares() { 7000 } else { 5200 }
    }

    fn extra(self, p: &Pickup) -> i64 {
        match (self.new_fares(), p.is_peak(), p.is_overnight()) {
            (true, true, _) => 250,
            (true, false, true) => 100,
            (false, true, _) => 100,
            (false, false, true) => 50,
            _ => 0,
        }
    }

    fn improvement_surcharge(self) -> i64 {
        match () {
            _ if self.new_fares() => 100,
            _ if self.since(2015, 1) => 30,
            _ => 0,
        }
    }

    /// A typical bridge or tunnel toll, in cents.
    fn toll(self) -> i64 {
        match () {
            _ if self.since(2024, 1) => 694,
            _ if self.since(2022, 1) => 655,
            _ if self.since(2020, 1) => 612,
            _ => 576,
        }
    }

    /// Tolls on a trip to Newark, in cents.
    fn newark_tolls(self) -> i64 {
        if self.since(2023, 1) { 1775 } else { 1375 }
    }

    /// The congestion surcharge column exists (2019 on); the charge itself started in February 2019.
    fn congestion_column(self) -> bool {
        self.since(2019, 1)
    }

    fn congestion_charged(self) -> bool {
        self.since(2019, 2)
    }

    /// Yellow `airport_fee` exists from 2021: fee per LaGuardia/JFK pickup, in cents.
    fn yellow_airport_fee(self) -> Option<i64> {
        match () {
            _ if self.since(2023, 1) => Some(175),
            _ if self.since(2021, 1) => Some(125),
            _ => None,
        }
    }

    /// High-volume `airport_fee` per airport pickup or dropoff, in cents (from 2022).
    fn hv_airport_fee(self) -> Option<i64> {
        self.since(2022, 1).then_some(250)
    }

    /// Manhattan CBD congestion pricing, from January 2025.
    fn cbd(self) -> bool {
        self.since(2025, 1)
    }

    /// Rows with a block of nulls appear from 2020 on.
    fn null_pattern(self) -> bool {
        self.since(2020, 1)
    }
}

/// A yellow or green cab trip (green ignores the yellow-only columns and the other way round).
#[derive(Debug, Clone)]
pub(crate) struct TaxiTrip {
    pub(crate) vendor: i32,
    pub(crate) pickup: i64,
    pub(crate) dropoff: i64,
    pub(crate) passengers: Option<i64>,
    /// Hundredths of a mile.
    pub(crate) distance: i64,
    pub(crate) rate_code: Option<i64>,
    /// `Some(true)` is "Y".
    pub(crate) store_and_fwd: Option<bool>,
    pub(crate) pu: i32,
    pub(crate) dz: i32,
    pub(crate) payment: Option<i64>,
    pub(crate) fare: i64,
    pub(crate) extra: i64,
    pub(crate) mta_tax: i64,
    pub(crate) tip: i64,
    pub(crate) tolls: i64,
    pub(crate) improvement: i64,
    pub(crate) total: i64,
    pub(crate) congestion: Option<i64>,
    pub(crate) airport_fee: Option<i64>,
    pub(crate) cbd: Option<i64>,
    pub(crate) trip_type: Option<i64>,
}

/// A for-hire vehicle trip.
#[derive(Debug, Clone)]
pub(crate) struct FhvTrip {
    pub(crate) base: u16,
    pub(crate) pickup: i64,
    pub(crate) dropoff: i64,
    pub(crate) pu: Option<i32>,
    pub(crate) dz: Option<i32>,
    pub(crate) sr_flag: Option<i32>,
    pub(crate) affiliated: Option<u16>,
}

/// A high-volume for-hire trip (Uber, Lyft, Via, Juno).
#[derive(Debug, Clone)]
pub(crate) struct HvTrip {
    /// 2..=5 for HV0002..HV0005.
    pub(crate) license: u8,
    pub(crate) base: u16,
    pub(crate) originating: Option<u16>,
    pub(crate) request: i64,
    pub(crate) on_scene: Option<i64>,
    pub(crate) pickup: i64,
    pub(crate) dropoff: i64,
    pub(crate) pu: i32,
    pub(crate) dz: i32,
    /// Hundredths of a mile.
    pub(crate) miles: i64,
    /// Seconds.
    pub(crate) trip_time: i64,
    pub(crate) base_fare: i64,
    pub(crate) tolls: i64,
    pub(crate) bcf: i64,
    pub(crate) sales_tax: i64,
    pub(crate) congestion: Option<i64>,
    pub(crate) airport_fee: Option<i64>,
    pub(crate) tips: i64,
    pub(crate) driver_pay: i64,
    pub(crate) shared_request: bool,
    pub(crate) shared_match: bool,
    pub(crate) access_a_ride: bool,
    pub(crate) wav_request: bool,
    pub(crate) wav_match: bool,
    pub(crate) sr_flag: Option<i32>,
    pub(crate) cbd: Option<i64>,
}

/// A row of the zone lookup: the zone at `index` (0-based), whose ID may have been made invalid.
#[derive(Debug, Clone)]
pub(crate) struct ZoneRow {
    pub(crate) index: usize,
    pub(crate) id: i32,
}

/// One generated row of any kind.
#[derive(Debug, Clone)]
pub(crate) enum Trip {
    Taxi(TaxiTrip),
    Fhv(FhvTrip),
    Hv(HvTrip),
    Zone(ZoneRow),
}

impl Trip {
    /// Put an out-of-range zone ID in the pickup (or dropoff) zone: the typed way a row goes bad.
    pub(crate) fn set_zone(&mut self, dropoff: bool, id: i32) {
        match self {
            Self::Taxi(t) if dropoff => t.dz = id,
            Self::Taxi(t) => t.pu = id,
            Self::Fhv(t) if dropoff => t.dz = Some(id),
            Self::Fhv(t) => t.pu = Some(id),
            Self::Hv(t) if dropoff => t.dz = id,
            Self::Hv(t) => t.pu = id,
            Self::Zone(z) => z.id = id,
        }
    }
}

/// Dispatching bases of traditional for-hire vehicles (the number after "B"), busiest first.
const FHV_BASES: [u16; 40] = [
    13, 14, 21, 37, 53, 111, 112, 149, 221, 254, 256, 310, 381, 445, 647, 692, 856, 900, 1051,
    1087, 1145, 1231, 1239, 1312, 1536, 1745, 1899, 2133, 2285, 2293, 2437, 2550, 2677, 2784, 2794,
    2881, 2935, 3016, 3136, 3285,
];
/// Uber's dispatching bases.
const UBER_BASES: [u16; 12] = [
    2764, 2765, 2869, 2870, 2871, 2872, 2875, 2876, 2877, 2879, 2883, 2887,
];

/// Everything that makes rows of one kind in one month; independent of the seed.
#[derive(Debug, Clone)]
pub(crate) struct TripModel {
    kind: TripKind,
    era: Era,
    clock: PickupClock,
    zones: ZoneSampler,
    fhv_bases: Weighted<u16>,
    hv_licenses: Weighted<u8>,
}

impl TripModel {
    pub(crate) fn new(kind: TripKind, month: YearMonth) -> Self {
        let era = Era::new(month);
        let pattern = match kind {
            TripKind::Yellow => Pattern::Yellow,
            TripKind::Green => Pattern::Green,
            _ => Pattern::ForHire,
        };
        let fhv_bases = Weighted::new(
            FHV_BASES
                .iter()
                .enumerate()
                .map(|(i, &b)| (b, 1.0 / (i as f64 + 2.0))),
        );
        let hv_licenses = Weighted::new([
            (2, if era.since(2019, 12) { 0.0 } else { 0.02 }),
            (3, 0.72),
            (4, if era.since(2022, 1) { 0.0 } else { 0.03 }),
            (5, 0.25),
        ]);
        Self {
            kind,
            era,
            clock: PickupClock::new(month),
            zones: ZoneSampler::new(pattern),
            fhv_bases,
            hv_licenses,
        }
    }

    /// Number of rows a request for `rows` produces: the zone lookup always has 265.
    pub(crate) fn row_count(&self, rows: u64) -> u64 {
        if self.kind == TripKind::Zones {
            ZONE_COUNT as u64
        } else {
            rows
        }
    }

    /// Row `index`, drawn from `rng` (the row's own stream).
    pub(crate) fn trip(&self, index: u64, rng: &mut Rng) -> Trip {
        match self.kind {
            TripKind::Yellow | TripKind::Green => Trip::Taxi(self.taxi(rng)),
            TripKind::Fhv => Trip::Fhv(self.fhv(rng)),
            TripKind::Fhvhv => Trip::Hv(self.hv(rng)),
            TripKind::Zones => Trip::Zone(ZoneRow {
                index: index as usize,
                id: index as i32 + 1,
            }),
        }
    }

    fn taxi(&self, rng: &mut Rng) -> TaxiTrip {
        let era = self.era;
        let green = self.kind == TripKind::Green;
        let p = self.clock.sample(rng);
        let (pu, dz) = self.zones.pair(rng);
        let (from, to) = (zone(pu), zone(dz));
        let miles = trip_miles(pu, dz, rng);
        let distance = (miles * 100.0).round() as i64;
        let seconds = trip_seconds(&p, miles, rng);
        let vendor = if rng.chance(if green { 0.15 } else { 0.3 }) {
            1
        } else {
            2
        };
        let nulls = era.null_pattern() && rng.chance(NULL_PATTERN_SHARE);

        let manhattan_jfk = (pu == JFK && to.borough == Borough::Manhattan)
            || (dz == JFK && from.borough == Borough::Manhattan);
        let rate_code = if dz == EWR {
            3
        } else if manhattan_jfk && rng.chance(0.85) {
            2
        } else if rng.chance(if green { 0.02 } else { 0.004 }) {
            5
        } else {
            1
        };
        let fare = match rate_code {
            2 => era.jfk_flat(),
            5 => rng.int(10, 90) * 100,
            _ => {
                let (initial, unit) = era.meter();
                let distance_units = (distance * 5 + 99) / 100;
                let slow_seconds = (seconds as f64 - miles / 12.0 * 3600.0).max(0.0);
                let time_units = (slow_seconds / 60.0 * 0.8) as i64;
                initial + unit * (distance_units + time_units)
            }
        };
        let extra = if rate_code == 5 { 0 } else { era.extra(&p) };
        let mta_tax = 50;
        let improvement = era.improvement_surcharge();
        let crosses_water = from.borough != to.borough
            && ![from.area, to.area].contains(&Area::Unknown)
            && from.borough != Borough::Ewr;
        let tolls = if rate_code == 3 {
            era.newark_tolls()
        } else if crosses_water && miles > 3.0 && rng.chance(0.3) {
            era.toll()
        } else {
            0
        };
        let congestion = (era.congestion_column() && !nulls).then(|| {
            let charged =
                era.congestion_charged() && (from.in_congestion_zone() || to.in_congestion_zone());
            match (charged, green) {
                (false, _) => 0,
                (true, false) => 250,
                (true, true) => 275,
            }
        });
        let airport_fee = if green || nulls {
            None
        } else {
            era.yellow_airport_fee()
                .map(|fee| if pu == JFK || pu == LGA { fee } else { 0 })
        };
        let cbd = era
            .cbd()
            .then(|| if from.in_cbd() || to.in_cbd() { 75 } else { 0 });

        let payment = (!nulls).then(|| {
            let card = if green { 0.58 } else { 0.72 };
            let u = rng.unit();
            match () {
                _ if u < card => 1,
                _ if u < 0.98 => 2,
                _ if u < 0.99 => 3,
                _ => 4,
            }
        });
        let tipped = match payment {
            Some(1) => !rng.chance(0.08),
            None => rng.chance(0.5),
            Some(_) => false,
        };
        let subtotal = fare
            + extra
            + mta_tax
            + improvement
            + congestion.unwrap_or(0)
            + airport_fee.unwrap_or(0)
            + cbd.unwrap_or(0);
        let tip = if tipped {
            (subtotal as f64 * tip_share(rng)).round() as i64
        } else {
            0
        };
        let total = subtotal + tip + tolls;

        let passengers = (!nulls).then(|| {
            if vendor == 1 && rng.chance(0.03) {
                0
            } else {
                let u = rng.unit();
                match () {
                    _ if u < 0.72 => 1,
                    _ if u < 0.87 => 2,
                    _ if u < 0.915 => 3,
                    _ if u < 0.935 => 4,
                    _ if u < 0.97 => 5,
                    _ => 6,
                }
            }
        });
        let store_and_fwd = (!nulls).then(|| rng.chance(0.005));
        let trip_type = (green && !nulls).then(|| {
            if rate_code == 5 || rng.chance(0.02) {
                2
            } else {
                1
            }
        });
        TaxiTrip {
            vendor,
            pickup: p.micros,
            dropoff: p.micros + seconds * MICROS_PER_SECOND,
            passengers,
            distance,
            rate_code: (!nulls).then_some(rate_code),
            store_and_fwd,
            pu,
            dz,
            payment,
            fare,
            extra,
            mta_tax,
            tip,
            tolls,
            improvement,
            total,
            congestion,
            airport_fee,
            cbd,
            trip_type,
        }
    }

    fn fhv(&self, rng: &mut Rng) -> FhvTrip {
        let p = self.clock.sample(rng);
        let (pu, dz) = self.zones.pair(rng);
        let miles = trip_miles(pu, dz, rng);
        let seconds = trip_seconds(&p, miles, rng);
        let base = self.fhv_bases.sample(rng);
        let affiliated = match rng.unit() {
            u if u < 0.9 => Some(base),
            u if u < 0.95 => Some(self.fhv_bases.sample(rng)),
            _ => None,
        };
        FhvTrip {
            base,
            pickup: p.micros,
            dropoff: p.micros + seconds * MICROS_PER_SECOND,
            pu: (!rng.chance(0.75)).then_some(pu),
            dz: (!rng.chance(0.15)).then_some(dz),
            sr_flag: rng.chance(0.03).then_some(1),
            affiliated,
        }
    }

    fn hv(&self, rng: &mut Rng) -> HvTrip {
        let era = self.era;
        let p = self.clock.sample(rng);
        let (pu, dz) = self.zones.pair(rng);
        let (from, to) = (zone(pu), zone(dz));
        let miles = trip_miles(pu, dz, rng);
        let trip_time = trip_seconds(&p, miles, rng);
        let license = self.hv_licenses.sample(rng);
        let base = match license {
            3 => UBER_BASES[rng.below(UBER_BASES.len() as u64) as usize],
            5 => 2510,
            4 => 2800,
            _ => 2907,
        };
        let wait = rng.int(10, 180) * MICROS_PER_SECOND;
        let response = rng.int(60, 600) * MICROS_PER_SECOND;
        let on_scene = p.micros - wait;

        let surge = if rng.chance(0.75) {
            1.0
        } else {
            rng.uniform(1.1, 1.8)
        };
        let metered = 255.0 + 135.0 * miles + 40.0 * trip_time as f64 / 60.0;
        let base_fare = ((metered * surge).round() as i64).max(800);
        let crosses_water =
            from.borough != to.borough && ![from.area, to.area].contains(&Area::Unknown);
        let tolls = if crosses_water && rng.chance(0.15) {
            era.toll()
        } else {
            0
        };
        let bcf = (base_fare as f64 * 0.025).round() as i64;
        let sales_tax = (base_fare as f64 * 0.08875).round() as i64;
        let congestion = era.congestion_column().then(|| {
            let charged =
                era.congestion_charged() && (from.in_congestion_zone() || to.in_congestion_zone());
            if charged { 275 } else { 0 }
        });
        let at_airport = [from.area, to.area].contains(&Area::Airport);
        let airport_fee = era
            .hv_airport_fee()
            .map(|fee| if at_airport { fee } else { 0 });
        let tips = if rng.chance(0.15) {
            rng.int(1, 8) * 100
        } else {
            0
        };
        let driver_pay = ((base_fare as f64 * rng.uniform(0.65, 0.85)).round() as i64).max(0);
        let shared_request = rng.chance(if era.since(2020, 4) { 0.01 } else { 0.05 });
        let wav_request = rng.chance(0.003);
        HvTrip {
            license,
            base,
            originating: (license == 3).then_some(base),
            request: on_scene - response,
            on_scene: (license != 5).then_some(on_scene),
            pickup: p.micros,
            dropoff: p.micros + trip_time * MICROS_PER_SECOND,
            pu,
            dz,
            miles: (miles * 100.0).round() as i64,
            trip_time,
            base_fare,
            tolls,
            bcf,
            sales_tax,
            congestion,
            airport_fee,
            tips,
            driver_pay,
            shared_request,
            shared_match: shared_request && rng.chance(0.5),
            access_a_ride: rng.chance(0.001),
            wav_request,
            wav_match: wav_request || rng.chance(0.05),
            sr_flag: shared_request.then_some(1),
            cbd: era
                .cbd()
                .then(|| if from.in_cbd() || to.in_cbd() { 150 } else { 0 }),
        }
    }
}

/// Road miles between two zones: straight-line distance between their positions, a detour factor and noise.
fn trip_miles(pu: i32, dz: i32, rng: &mut Rng) -> f64 {
    let (a, b) = (zone(pu), zone(dz));
    let miles = if a.area == Area::Unknown || b.area == Area::Unknown {
        rng.uniform(0.5, 9.0)
    } else if pu == dz {
        rng.uniform(0.3, 1.6)
    } else {
        a.miles_to(b) * 1.25 * rng.uniform(0.85, 1.2) + 0.2
    };
    (miles * 100.0).round().max(10.0) / 100.0
}

/// Trip duration in seconds: distance at the hour's speed, plus time to get going and to stop.
fn trip_seconds(p: &Pickup, miles: f64, rng: &mut Rng) -> i64 {
    let mph = p.speed_mph(miles) * rng.uniform(0.75, 1.3);
    ((miles / mph * 3600.0 + rng.uniform(30.0, 150.0)).round() as i64).max(60)
}

/// Share of the fare a tipping rider adds: round 20/25/30 percent often, otherwise 15-25 percent.
fn tip_share(rng: &mut Rng) -> f64 {
    match rng.unit() {
        u if u < 0.35 => 0.20,
        u if u < 0.45 => 0.25,
        u if u < 0.50 => 0.30,
        _ => rng.uniform(0.15, 0.25),
    }
}

/// The zone lookup row at `index`.
pub(crate) fn zone_at(index: usize) -> &'static zones::Zone {
    &zones::zones()[index]
}
