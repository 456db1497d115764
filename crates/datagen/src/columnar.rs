//! Rows straight into Arrow arrays in the unified schema of their kind (no text round-trip).

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, new_null_array,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use tripline_core::TripKind;

use crate::trips::{FhvTrip, HvTrip, TaxiTrip, Trip, ZoneRow, zone_at};

fn money(b: &mut Float64Builder, cents: i64) {
    b.append_value(cents as f64 / 100.0);
}

fn opt_money(b: &mut Float64Builder, cents: Option<i64>) {
    b.append_option(cents.map(|c| c as f64 / 100.0));
}

fn flag(b: &mut StringBuilder, v: Option<bool>) {
    b.append_option(v.map(|y| if y { "Y" } else { "N" }));
}

/// A base number like `B00013`, written into the builder without an intermediate String.
fn base_number(b: &mut StringBuilder, n: Option<u16>) {
    match n {
        Some(n) => {
            let _ = write!(b, "B{n:05}");
            b.append_value("");
        }
        None => b.append_null(),
    }
}

/// Arrow builders for one batch of one kind.
pub(crate) enum Columns {
    Taxi(Box<TaxiColumns>),
    Fhv(Box<FhvColumns>),
    Hv(Box<HvColumns>),
    Zones(Box<ZoneColumns>),
}

impl Columns {
    pub(crate) fn new(kind: TripKind, capacity: usize) -> Self {
        match kind {
            TripKind::Yellow | TripKind::Green => Self::Taxi(Box::new(TaxiColumns::new(capacity))),
            TripKind::Fhv => Self::Fhv(Box::new(FhvColumns::new(capacity))),
            TripKind::Fhvhv => Self::Hv(Box::new(HvColumns::new(capacity))),
            TripKind::Zones => Self::Zones(Box::new(ZoneColumns::new(capacity))),
        }
    }

    pub(crate) fn append(&mut self, trip: &Trip) {
        match (self, trip) {
            (Self::Taxi(c), Trip::Taxi(t)) => c.append(t),
            (Self::Fhv(c), Trip::Fhv(t)) => c.append(t),
            (Self::Hv(c), Trip::Hv(t)) => c.append(t),
            (Self::Zones(c), Trip::Zone(z)) => c.append(z),
            _ => unreachable!("a row of another kind than its batch"),
        }
    }

    /// The batch in `kind.schema()`, leaving the builders empty.
    pub(crate) fn finish(&mut self, kind: TripKind) -> RecordBatch {
        let arrays = match self {
            Self::Taxi(c) if kind == TripKind::Green => c.finish_green(),
            Self::Taxi(c) => c.finish_yellow(),
            Self::Fhv(c) => c.finish(),
            Self::Hv(c) => c.finish(),
            Self::Zones(c) => c.finish(),
        };
        RecordBatch::try_new(kind.schema(), arrays)
            .expect("generated columns match the kind's schema")
    }
}

pub(crate) struct TaxiColumns {
    vendor: Int32Builder,
    pickup: TimestampMicrosecondBuilder,
    dropoff: TimestampMicrosecondBuilder,
    passengers: Int64Builder,
    distance: Float64Builder,
    rate_code: Int64Builder,
    store_and_fwd: StringBuilder,
    pu: Int32Builder,
    dz: Int32Builder,
    payment: Int64Builder,
    fare: Float64Builder,
    extra: Float64Builder,
    mta_tax: Float64Builder,
    tip: Float64Builder,
    tolls: Float64Builder,
    improvement: Float64Builder,
    total: Float64Builder,
    congestion: Float64Builder,
    airport_fee: Float64Builder,
    cbd: Float64Builder,
    trip_type: Int64Builder,
    rows: usize,
}

impl TaxiColumns {
    fn new(n: usize) -> Self {
        Self {
            vendor: Int32Builder::with_capacity(n),
            pickup: TimestampMicrosecondBuilder::with_capacity(n),
            dropoff: TimestampMicrosecondBuilder::with_capacity(n),
            passengers: Int64Builder::with_capacity(n),
            distance: Float64Builder::with_capacity(n),
            rate_code: Int64Builder::with_capacity(n),
            store_and_fwd: StringBuilder::with_capacity(n, n),
            pu: Int32Builder::with_capacity(n),
            dz: Int32Builder::with_capacity(n),
            payment: Int64Builder::with_capacity(n),
            fare: Float64Builder::with_capacity(n),
            extra: Float64Builder::with_capacity(n),
            mta_tax: Float64Builder::with_capacity(n),
            tip: Float64Builder::with_capacity(n),
            tolls: Float64Builder::with_capacity(n),
            improvement: Float64Builder::with_capacity(n),
            total: Float64Builder::with_capacity(n),
            congestion: Float64Builder::with_capacity(n),
            airport_fee: Float64Builder::with_capacity(n),
            cbd: Float64Builder::with_capacity(n),
            trip_type: Int64Builder::with_capacity(n),
            rows: 0,
        }
    }

    fn append(&mut self, t: &TaxiTrip) {
        self.vendor.append_value(t.vendor);
        self.pickup.append_value(t.pickup);
        self.dropoff.append_value(t.dropoff);
        self.passengers.append_option(t.passengers);
        money(&mut self.distance, t.distance);
        self.rate_code.append_option(t.rate_code);
        flag(&mut self.store_and_fwd, t.store_and_fwd);
        self.pu.append_value(t.pu);
        self.dz.append_value(t.dz);
        self.payment.append_option(t.payment);
        money(&mut self.fare, t.fare);
        money(&mut self.extra, t.extra);
        money(&mut self.mta_tax, t.mta_tax);
        money(&mut self.tip, t.tip);
        money(&mut self.tolls, t.tolls);
        money(&mut self.improvement, t.improvement);
        money(&mut self.total, t.total);
        opt_money(&mut self.congestion, t.congestion);
        opt_money(&mut self.airport_fee, t.airport_fee);
        opt_money(&mut self.cbd, t.cbd);
        self.trip_type.append_option(t.trip_type);
        self.rows += 1;
    }

    fn finish_yellow(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        self.trip_type.finish();
        vec![
            Arc::new(self.vendor.finish()),
            Arc::new(self.pickup.finish()),
            Arc::new(self.dropoff.finish()),
            Arc::new(self.passengers.finish()),
            Arc::new(self.distance.finish()),
            Arc::new(self.rate_code.finish()),
            Arc::new(self.store_and_fwd.finish()),
            Arc::new(self.pu.finish()),
            Arc::new(self.dz.finish()),
            Arc::new(self.payment.finish()),
            Arc::new(self.fare.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.mta_tax.finish()),
            Arc::new(self.tip.finish()),
            Arc::new(self.tolls.finish()),
            Arc::new(self.improvement.finish()),
            Arc::new(self.total.finish()),
            Arc::new(self.congestion.finish()),
            Arc::new(self.airport_fee.finish()),
            Arc::new(self.cbd.finish()),
        ]
    }

    fn finish_green(&mut self) -> Vec<ArrayRef> {
        let ehail_fee = new_null_array(&DataType::Float64, std::mem::take(&mut self.rows));
        self.airport_fee.finish();
        vec![
            Arc::new(self.vendor.finish()),
            Arc::new(self.pickup.finish()),
            Arc::new(self.dropoff.finish()),
            Arc::new(self.store_and_fwd.finish()),
            Arc::new(self.rate_code.finish()),
            Arc::new(self.pu.finish()),
            Arc::new(self.dz.finish()),
            Arc::new(self.passengers.finish()),
            Arc::new(self.distance.finish()),
            Arc::new(self.fare.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.mta_tax.finish()),
            Arc::new(self.tip.finish()),
            Arc::new(self.tolls.finish()),
            ehail_fee,
            Arc::new(self.improvement.finish()),
            Arc::new(self.total.finish()),
            Arc::new(self.payment.finish()),
            Arc::new(self.trip_type.finish()),
            Arc::new(self.congestion.finish()),
            Arc::new(self.cbd.finish()),
        ]
    }
}

pub(crate) struct FhvColumns {
    base: StringBuilder,
    pickup: TimestampMicrosecondBuilder,
    dropoff: TimestampMicrosecondBuilder,
    pu: Int32Builder,
    dz: Int32Builder,
    sr_flag: Int32Builder,
    affiliated: StringBuilder,
}

impl FhvColumns {
    fn new(n: usize) -> Self {
        Self {
            base: StringBuilder::with_capacity(n, 6 * n),
            pickup: TimestampMicrosecondBuilder::with_capacity(n),
            dropoff: TimestampMicrosecondBuilder::with_capacity(n),
            pu: Int32Builder::with_capacity(n),
            dz: Int32Builder::with_capacity(n),
            sr_flag: Int32Builder::with_capacity(n),
            affiliated: StringBuilder::with_capacity(n, 6 * n),
        }
    }

    fn append(&mut self, t: &FhvTrip) {
        base_number(&mut self.base, Some(t.base));
        self.pickup.append_value(t.pickup);
        self.dropoff.append_value(t.dropoff);
        self.pu.append_option(t.pu);
        self.dz.append_option(t.dz);
        self.sr_flag.append_option(t.sr_flag);
        base_number(&mut self.affiliated, t.affiliated);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.base.finish()),
            Arc::new(self.pickup.finish()),
            Arc::new(self.dropoff.finish()),
            Arc::new(self.pu.finish()),
            Arc::new(self.dz.finish()),
            Arc::new(self.sr_flag.finish()),
            Arc::new(self.affiliated.finish()),
        ]
    }
}

pub(crate) struct HvColumns {
    license: StringBuilder,
    base: StringBuilder,
    originating: StringBuilder,
    request: TimestampMicrosecondBuilder,
    on_scene: TimestampMicrosecondBuilder,
    pickup: TimestampMicrosecondBuilder,
    dropoff: TimestampMicrosecondBuilder,
    pu: Int32Builder,
    dz: Int32Builder,
    miles: Float64Builder,
    trip_time: Int64Builder,
    base_fare: Float64Builder,
    tolls: Float64Builder,
    bcf: Float64Builder,
    sales_tax: Float64Builder,
    congestion: Float64Builder,
    airport_fee: Float64Builder,
    tips: Float64Builder,
    driver_pay: Float64Builder,
    shared_request: StringBuilder,
    shared_match: StringBuilder,
    access_a_ride: StringBuilder,
    wav_request: StringBuilder,
    wav_match: StringBuilder,
    sr_flag: Int32Builder,
    cbd: Float64Builder,
}

impl HvColumns {
    fn new(n: usize) -> Self {
        let text = |width: usize| StringBuilder::with_capacity(n, width * n);
        Self {
            license: text(6),
            base: text(6),
            originating: text(6),
            request: TimestampMicrosecondBuilder::with_capacity(n),
            on_scene: TimestampMicrosecondBuilder::with_capacity(n),
            pickup: TimestampMicrosecondBuilder::with_capacity(n),
            dropoff: TimestampMicrosecondBuilder::with_capacity(n),
            pu: Int32Builder::with_capacity(n),
            dz: Int32Builder::with_capacity(n),
            miles: Float64Builder::with_capacity(n),
            trip_time: Int64Builder::with_capacity(n),
            base_fare: Float64Builder::with_capacity(n),
            tolls: Float64Builder::with_capacity(n),
            bcf: Float64Builder::with_capacity(n),
            sales_tax: Float64Builder::with_capacity(n),
            congestion: Float64Builder::with_capacity(n),
            airport_fee: Float64Builder::with_capacity(n),
            tips: Float64Builder::with_capacity(n),
            driver_pay: Float64Builder::with_capacity(n),
            shared_request: text(1),
            shared_match: text(1),
            access_a_ride: text(1),
            wav_request: text(1),
            wav_match: text(1),
            sr_flag: Int32Builder::with_capacity(n),
            cbd: Float64Builder::with_capacity(n),
        }
    }

    fn append(&mut self, t: &HvTrip) {
        const LICENSES: [&str; 6] = ["HV0000", "HV0001", "HV0002", "HV0003", "HV0004", "HV0005"];
        self.license.append_value(LICENSES[usize::from(t.license)]);
        base_number(&mut self.base, Some(t.base));
        base_number(&mut self.originating, t.originating);
        self.request.append_value(t.request);
        self.on_scene.append_option(t.on_scene);
        self.pickup.append_value(t.pickup);
        self.dropoff.append_value(t.dropoff);
        self.pu.append_value(t.pu);
        self.dz.append_value(t.dz);
        money(&mut self.miles, t.miles);
        self.trip_time.append_value(t.trip_time);
        money(&mut self.base_fare, t.base_fare);
        money(&mut self.tolls, t.tolls);
        money(&mut self.bcf, t.bcf);
        money(&mut self.sales_tax, t.sales_tax);
        opt_money(&mut self.congestion, t.congestion);
        opt_money(&mut self.airport_fee, t.airport_fee);
        money(&mut self.tips, t.tips);
        money(&mut self.driver_pay, t.driver_pay);
        flag(&mut self.shared_request, Some(t.shared_request));
        flag(&mut self.shared_match, Some(t.shared_match));
        flag(&mut self.access_a_ride, Some(t.access_a_ride));
        flag(&mut self.wav_request, Some(t.wav_request));
        flag(&mut self.wav_match, Some(t.wav_match));
        self.sr_flag.append_option(t.sr_flag);
        opt_money(&mut self.cbd, t.cbd);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.license.finish()),
            Arc::new(self.base.finish()),
            Arc::new(self.originating.finish()),
            Arc::new(self.request.finish()),
            Arc::new(self.on_scene.finish()),
            Arc::new(self.pickup.finish()),
            Arc::new(self.dropoff.finish()),
            Arc::new(self.pu.finish()),
            Arc::new(self.dz.finish()),
            Arc::new(self.miles.finish()),
            Arc::new(self.trip_time.finish()),
            Arc::new(self.base_fare.finish()),
            Arc::new(self.tolls.finish()),
            Arc::new(self.bcf.finish()),
            Arc::new(self.sales_tax.finish()),
            Arc::new(self.congestion.finish()),
            Arc::new(self.airport_fee.finish()),
            Arc::new(self.tips.finish()),
            Arc::new(self.driver_pay.finish()),
            Arc::new(self.shared_request.finish()),
            Arc::new(self.shared_match.finish()),
            Arc::new(self.access_a_ride.finish()),
            Arc::new(self.wav_request.finish()),
            Arc::new(self.wav_match.finish()),
            Arc::new(self.sr_flag.finish()),
            Arc::new(self.cbd.finish()),
        ]
    }
}

pub(crate) struct ZoneColumns {
    id: Int32Builder,
    borough: StringBuilder,
    zone: StringBuilder,
    service_zone: StringBuilder,
}

impl ZoneColumns {
    fn new(n: usize) -> Self {
        Self {
            id: Int32Builder::with_capacity(n),
            borough: StringBuilder::with_capacity(n, 10 * n),
            zone: StringBuilder::with_capacity(n, 20 * n),
            service_zone: StringBuilder::with_capacity(n, 10 * n),
        }
    }

    fn append(&mut self, z: &ZoneRow) {
        let zone = zone_at(z.index);
        self.id.append_value(z.id);
        self.borough.append_value(zone.borough.name());
        self.zone.append_value(&zone.name);
        self.service_zone.append_value(zone.service_zone);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.borough.finish()),
            Arc::new(self.zone.finish()),
            Arc::new(self.service_zone.finish()),
        ]
    }
}
