//! The 265 taxi zones: the real borough of each LocationID, synthetic zone names, an approximate position for
//! trip distances, and the pickup/dropoff weights of each kind of trip.

use std::sync::OnceLock;

use crate::rng::{Rng, Weighted, mix};

/// Number of taxi zones (LocationID 1..=265).
pub(crate) const ZONE_COUNT: usize = 265;

/// Newark airport.
pub(crate) const EWR: i32 = 1;
/// JFK airport.
pub(crate) const JFK: i32 = 132;
/// LaGuardia airport.
pub(crate) const LGA: i32 = 138;

/// The borough of each LocationID, one letter per zone from 1 to 265 (as in the TLC lookup):
/// E = EWR, Q = Queens, X = Bronx, M = Manhattan, S = Staten Island, K = Brooklyn, U = 264 and 265.
const BOROUGH_CODES: &[u8; ZONE_COUNT] = b"EQXMSSQQQQKMMKQQKXQXKKSMKKQQKQXXKKKKKQKKMMMSMXXMKMXKQKKQQXXXKKKQKKKMXQKKQMMKKX\
MKXQQSKQMMKMKQQXQQKQSMQQMMMKMKSSKKMMSMQSXMQQKQMXMMQQQQKQQXMQQMMMMMQQXMKKMMMKKSQMXQMMMMKMXXXMQSQXQSKKQQKXXXXMS\
KKKQQQMKQQQXXQMQSQSQXMKMXXSQQKQQXSKQMKQKKMMMMMMXMMMMXXXMMSMXXMXSQQXKKKQXQMMMUU";

/// Manhattan below Canal/Houston-ish and the harbour islands.
const DOWNTOWN: &[i32] = &[
    4, 12, 13, 45, 79, 87, 88, 103, 104, 105, 113, 114, 125, 144, 148, 158, 209, 211, 231, 232,
    249, 261,
];
/// Manhattan from 14th to 59th street (with downtown: the congestion-pricing zone).
const MIDTOWN: &[i32] = &[
    48, 50, 68, 90, 100, 107, 137, 161, 162, 163, 164, 170, 186, 224, 229, 230, 233, 234, 246,
];
/// Manhattan from 59th to 110th street, and Roosevelt Island.
const UPTOWN: &[i32] = &[
    24, 43, 140, 141, 142, 143, 151, 202, 236, 237, 238, 239, 262, 263,
];
/// Manhattan above 110th street (East Harlem from 96th) and Randalls Island: where green cabs may pick up.
const NORTH: &[i32] = &[
    41, 42, 74, 75, 116, 120, 127, 128, 152, 153, 166, 194, 243, 244,
];
/// Zones of Manhattan outside the yellow zone ("Boro Zone" in the lookup); Randalls Island counts as yellow.
const MANHATTAN_BORO_ZONE: &[i32] = &[
    41, 42, 74, 75, 116, 120, 127, 128, 152, 153, 166, 202, 243, 244,
];

/// The busiest yellow-cab pickup zones.
const YELLOW_HOT: &[i32] = &[
    237, 236, 161, 162, 186, 170, 142, 230, 48, 234, 163, 68, 141, 79, 239, 107, 140, 238, 263, 262,
];
/// Busy outer-borough neighbourhoods (green cabs and for-hire vehicles).
const OUTER_HOT: &[i32] = &[
    7, 82, 129, 95, 260, 223, 226, 196, 92, 130, 255, 256, 97, 65, 66, 181, 25, 33, 61, 189, 17,
    247, 168, 69, 159, 119, 235, 76, 39, 188,
];

/// A borough as the TLC lookup spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Borough {
    Ewr,
    Queens,
    Bronx,
    Manhattan,
    StatenIsland,
    Brooklyn,
    Unknown,
    NotApplicable,
}

impl Borough {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ewr => "EWR",
            Self::Queens => "Queens",
            Self::Bronx => "Bronx",
            Self::Manhattan => "Manhattan",
            Self::StatenIsland => "Staten Island",
            Self::Brooklyn => "Brooklyn",
            Self::Unknown => "Unknown",
            Self::NotApplicable => "N/A",
        }
    }
}

/// Where in the city a zone is, coarser than a zone and finer than a borough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Area {
    Downtown,
    Midtown,
    Uptown,
    North,
    Outer,
    Airport,
    Unknown,
}

/// One taxi zone.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub(crate) id: i32,
    pub(crate) borough: Borough,
    pub(crate) area: Area,
    pub(crate) name: String,
    pub(crate) service_zone: &'static str,
    /// Approximate position in miles east and north of 42nd street in Midtown.
    pub(crate) pos: (f64, f64),
}

impl Zone {
    /// Straight-line miles between the two zones' positions.
    pub(crate) fn miles_to(&self, other: &Zone) -> f64 {
        (self.pos.0 - other.pos.0).hypot(self.pos.1 - other.pos.1)
    }

    /// Manhattan south of 96th street: trips touching it pay the congestion surcharge (since 2019-02).
    pub(crate) fn in_congestion_zone(&self) -> bool {
        matches!(self.area, Area::Downtown | Area::Midtown | Area::Uptown) && self.id != 202
    }

    /// Manhattan south of 60th street: trips touching it pay the CBD congestion fee (since 2025-01).
    pub(crate) fn in_cbd(&self) -> bool {
        matches!(self.area, Area::Downtown | Area::Midtown)
    }
}

/// The zone of a LocationID in 1..=265.
pub(crate) fn zone(id: i32) -> &'static Zone {
    &zones()[(id - 1) as usize]
}

/// All 265 zones, LocationID order.
pub(crate) fn zones() -> &'static [Zone] {
    static ZONES: OnceLock<Vec<Zone>> = OnceLock::new();
    ZONES.get_or_init(|| (1..=ZONE_COUNT as i32).map(build_zone).collect())
}

/// A number in `[0, 1)` that depends only on the zone and a salt: fixed jitter, not seeded randomness.
fn jitter(id: i32, salt: u64) -> f64 {
    (mix((id as u64) << 8 | salt) >> 11) as f64 / (1u64 << 53) as f64
}

fn build_zone(id: i32) -> Zone {
    let borough = match BOROUGH_CODES[(id - 1) as usize] {
        b'E' => Borough::Ewr,
        b'Q' => Borough::Queens,
        b'X' => Borough::Bronx,
        b'M' => Borough::Manhattan,
        b'S' => Borough::StatenIsland,
        b'K' => Borough::Brooklyn,
        _ if id == 264 => Borough::Unknown,
        _ => Borough::NotApplicable,
    };
    let area = if id == EWR || id == JFK || id == LGA {
        Area::Airport
    } else if DOWNTOWN.contains(&id) {
        Area::Downtown
    } else if MIDTOWN.contains(&id) {
        Area::Midtown
    } else if UPTOWN.contains(&id) {
        Area::Uptown
    } else if NORTH.contains(&id) {
        Area::North
    } else if id >= 264 {
        Area::Unknown
    } else {
        Area::Outer
    };
    let (jx, jy) = (jitter(id, 1), jitter(id, 2));
    let box_at =
        |cx: f64, cy: f64, half: f64| (cx + (jx * 2.0 - 1.0) * half, cy + (jy * 2.0 - 1.0) * half);
    let pos = match (id, area, borough) {
        (EWR, ..) => (-10.0, -5.0),
        (JFK, ..) => (11.0, -7.0),
        (LGA, ..) => (6.0, 3.0),
        // Manhattan, in miles north of 42nd street: Battery -4.5, 14th -1.4, 59th 0.9, 110th 3.5, Inwood 8.5.
        (_, Area::Downtown, _) => (jx * 1.4 - 0.9, -4.5 + jy * 3.1),
        (_, Area::Midtown, _) => (jx * 1.4 - 0.6, -1.4 + jy * 2.3),
        (_, Area::Uptown, _) => (jx * 1.4 - 0.3, 0.9 + jy * 2.6),
        (_, Area::North, _) => (jx * 1.2, 3.5 + jy * 5.0),
        (_, _, Borough::Queens) => box_at(6.0, -1.0, 3.5),
        (_, _, Borough::Brooklyn) => box_at(1.0, -7.0, 3.0),
        (_, _, Borough::Bronx) => box_at(3.0, 9.5, 2.5),
        (_, _, Borough::StatenIsland) => box_at(-7.0, -12.0, 3.0),
        _ => box_at(0.0, 0.0, 5.0),
    };
    let (name, service_zone) = match (id, borough) {
        (EWR, _) => ("Newark Airport".to_owned(), "EWR"),
        (JFK, _) => ("JFK Airport".to_owned(), "Airports"),
        (LGA, _) => ("LaGuardia Airport".to_owned(), "Airports"),
        (264, _) => ("NV".to_owned(), "N/A"),
        (265, _) => ("Outside of NYC".to_owned(), "N/A"),
        (_, Borough::Manhattan) if !MANHATTAN_BORO_ZONE.contains(&id) => {
            (zone_name(id), "Yellow Zone")
        }
        _ => (zone_name(id), "Boro Zone"),
    };
    Zone {
        id,
        borough,
        area,
        name,
        service_zone,
        pos,
    }
}

/// A made-up but unique zone name: one of 32 roots times 16 endings, picked by a bijection of the ID; every
/// seventh zone joins two names with a slash, like the real "Bloomfield/Emerson Hill".
fn zone_name(id: i32) -> String {
    const ROOTS: [&str; 32] = [
        "Elm", "Oak", "Cedar", "Maple", "Willow", "Harbor", "River", "Meadow", "Garden", "Pine",
        "Hudson", "Liberty", "Union", "Chester", "Brook", "Stone", "Spring", "Ridge", "Lake",
        "Mill", "Grove", "Haven", "Clinton", "Franklin", "Madison", "Irving", "Lenox", "Morris",
        "Carroll", "Warren", "Fulton", "Bayard",
    ];
    const ENDINGS: [&str; 16] = [
        "Heights", "Park", "Village", "Hill", "Point", "Square", "Gardens", "Beach", "Terrace",
        "Yards", "Flats", "Commons", "Landing", "Slope", "Manor", "Hollow",
    ];
    let combos = (ROOTS.len() * ENDINGS.len()) as i64;
    let k = (i64::from(id) * 97 + 13).rem_euclid(combos) as usize;
    let mut name = format!(
        "{} {}",
        ROOTS[k / ENDINGS.len()],
        ENDINGS[k % ENDINGS.len()]
    );
    if id % 7 == 3 {
        name.push('/');
        name.push_str(ROOTS[(k + 5) % ROOTS.len()]);
        name.push_str(" Hill");
    }
    name
}

/// Which pickup/dropoff pattern a kind of trip follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Yellow cabs: Manhattan and the airports.
    Yellow,
    /// Green cabs: outer boroughs and upper Manhattan.
    Green,
    /// For-hire vehicles: the whole city.
    ForHire,
}

/// Pickup and dropoff zone draws for one pattern: pickups by zone weight, dropoffs by zone weight times a
/// decay with distance from the pickup (a gravity model), so most trips are short and airport trips are long.
#[derive(Debug, Clone)]
pub(crate) struct ZoneSampler {
    pickup: Weighted<i32>,
    /// Dropoff draws for each pickup zone, LocationID order.
    dropoff: Vec<Weighted<i32>>,
}

impl ZoneSampler {
    pub(crate) fn new(pattern: Pattern) -> Self {
        let fixed = |z: &Zone| 0.6 + 0.8 * jitter(z.id, 3);
        let pickup = Weighted::new(
            zones()
                .iter()
                .map(|z| (z.id, pickup_weight(pattern, z) * fixed(z))),
        );
        let reach = match pattern {
            Pattern::Yellow => 1.6,
            Pattern::Green => 1.8,
            Pattern::ForHire => 2.4,
        };
        let dropoff = zones()
            .iter()
            .map(|from| {
                Weighted::new(zones().iter().map(|to| {
                    let decay = match (from.area, to.area) {
                        (Area::Airport | Area::Unknown, _) | (_, Area::Airport | Area::Unknown) => {
                            0.25
                        }
                        _ => (-from.miles_to(to) / reach).exp() + 0.02,
                    };
                    (to.id, dropoff_weight(pattern, to) * fixed(to) * decay)
                }))
            })
            .collect();
        Self { pickup, dropoff }
    }

    /// A (pickup, dropoff) pair.
    pub(crate) fn pair(&self, rng: &mut Rng) -> (i32, i32) {
        let pu = self.pickup.sample(rng);
        (pu, self.dropoff[(pu - 1) as usize].sample(rng))
    }
}

fn pickup_weight(pattern: Pattern, z: &Zone) -> f64 {
    match pattern {
        Pattern::Yellow => match (z.id, z.area) {
            (JFK, _) => 90.0,
            (LGA, _) => 60.0,
            (EWR, _) => 0.2,
            (264, _) => 4.0,
            (265, _) => 0.5,
            (id, _) if YELLOW_HOT.contains(&id) => 100.0,
            (_, Area::Downtown | Area::Midtown | Area::Uptown) => 35.0,
            (_, Area::North) => 8.0,
            (id, _) if OUTER_HOT.contains(&id) => 4.0,
            _ => 1.0,
        },
        Pattern::Green => match (z.id, z.area) {
            (74 | 75 | 41, _) => 120.0,
            (194, _) => 1.0,
            (264, _) => 6.0,
            (265, _) => 1.0,
            (_, Area::Airport) => 0.5,
            (_, Area::North) => 40.0,
            (_, Area::Downtown | Area::Midtown | Area::Uptown) => 0.5,
            (id, _) if OUTER_HOT.contains(&id) => 60.0,
            _ => 6.0,
        },
        Pattern::ForHire => match (z.id, z.area) {
            (JFK | LGA, _) => 60.0,
            (EWR, _) => 2.0,
            (264, _) => 6.0,
            (265, _) => 2.0,
            (id, _) if YELLOW_HOT.contains(&id) => 40.0,
            (_, Area::Downtown | Area::Midtown | Area::Uptown) => 20.0,
            (_, Area::North) => 18.0,
            (id, _) if OUTER_HOT.contains(&id) => 30.0,
            _ => 10.0,
        },
    }
}

fn dropoff_weight(pattern: Pattern, z: &Zone) -> f64 {
    match pattern {
        Pattern::Yellow => match (z.id, z.area) {
            (JFK | LGA, _) => 25.0,
            (EWR, _) => 3.0,
            (264, _) => 3.0,
            (265, _) => 1.0,
            (id, _) if YELLOW_HOT.contains(&id) => 60.0,
            (_, Area::Downtown | Area::Midtown | Area::Uptown) => 35.0,
            (_, Area::North) => 12.0,
            (id, _) if OUTER_HOT.contains(&id) => 6.0,
            _ => 1.5,
        },
        Pattern::Green => match (z.id, z.area) {
            (264, _) => 4.0,
            (265, _) => 1.0,
            (EWR, _) => 0.3,
            (_, Area::Airport) => 5.0,
            (_, Area::North) => 30.0,
            (_, Area::Downtown | Area::Midtown | Area::Uptown) => 8.0,
            (id, _) if OUTER_HOT.contains(&id) => 30.0,
            _ => 10.0,
        },
        Pattern::ForHire => pickup_weight(Pattern::ForHire, z),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boroughs_match_the_tlc_lookup_counts() {
        let count = |b: Borough| zones().iter().filter(|z| z.borough == b).count();
        assert_eq!(zones().len(), 265);
        assert_eq!(count(Borough::Manhattan), 69);
        assert_eq!(count(Borough::Queens), 69);
        assert_eq!(count(Borough::Brooklyn), 61);
        assert_eq!(count(Borough::Bronx), 43);
        assert_eq!(count(Borough::StatenIsland), 20);
        assert_eq!(zone(EWR).borough, Borough::Ewr);
        assert_eq!(zone(264).borough, Borough::Unknown);
        assert_eq!(zone(265).borough, Borough::NotApplicable);
    }

    #[test]
    fn every_listed_manhattan_zone_is_in_manhattan() {
        for &id in DOWNTOWN
            .iter()
            .chain(MIDTOWN)
            .chain(UPTOWN)
            .chain(NORTH)
            .chain(YELLOW_HOT)
        {
            assert_eq!(zone(id).borough, Borough::Manhattan, "zone {id}");
        }
        let manhattan = zones().iter().filter(|z| z.borough == Borough::Manhattan);
        assert!(
            manhattan.clone().all(|z| z.area != Area::Outer),
            "every Manhattan zone has an area"
        );
        assert_eq!(
            manhattan
                .filter(|z| z.service_zone == "Yellow Zone")
                .count(),
            55
        );
    }

    #[test]
    fn zone_names_are_unique_and_csv_safe() {
        let mut names: Vec<&str> = zones().iter().map(|z| z.name.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| !n.contains(',') && !n.contains('"') && !n.is_empty())
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 265);
    }

    #[test]
    fn green_cabs_rarely_pick_up_in_the_yellow_zone() {
        let sampler = ZoneSampler::new(Pattern::Green);
        let mut rng = Rng::for_row(5, 5);
        let yellow_zone = (0..20_000)
            .filter(|_| zone(sampler.pair(&mut rng).0).service_zone == "Yellow Zone")
            .count();
        assert!(
            yellow_zone < 400,
            "{yellow_zone} of 20000 green pickups in the yellow zone"
        );
    }
}
