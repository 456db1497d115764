//! Cron schedules with time zones (`{cron: "0 9 1 * *", timezone: America/New_York, params: {...}}`) and the
//! computation of due times with croner.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::{FlowError, Result};
use crate::params::Params;

/// One schedule of a flow: a cron expression (5 fields, or 6 with seconds first) evaluated in a time zone, and
/// parameter values for the runs it creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Cron expression, e.g. `0 9 1 * *` (09:00 on the 1st of each month).
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`), e.g. `America/New_York`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Parameter values of scheduled runs; the flow's defaults fill the rest.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    /// A disabled schedule is kept in the file but never fires.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl ScheduleSpec {
    /// A schedule in UTC.
    pub fn new(cron: impl Into<String>) -> Self {
        Self {
            cron: cron.into(),
            timezone: None,
            params: Params::new(),
            enabled: true,
        }
    }

    /// Sets the time zone.
    pub fn in_timezone(mut self, tz: impl Into<String>) -> Self {
        self.timezone = Some(tz.into());
        self
    }

    /// Checks the cron expression and the time zone.
    pub fn check(&self) -> Result<()> {
        self.parsed().map(|_| ())
    }

    fn parsed(&self) -> Result<(Cron, Tz)> {
        let cron = Cron::from_str(&self.cron).map_err(|e| {
            FlowError::Schedule(format!("bad cron expression `{}`: {e}", self.cron))
        })?;
        let tz = match &self.timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                FlowError::Schedule(format!(
                    "unknown time zone `{name}` (use an IANA name like America/New_York)"
                ))
            })?,
        };
        Ok((cron, tz))
    }

    /// The first due time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let (cron, tz) = self.parsed()?;
        let local = after.with_timezone(&tz);
        let next = cron.find_next_occurrence(&local, false).map_err(|e| {
            FlowError::Schedule(format!("`{}` has no next occurrence: {e}", self.cron))
        })?;
        Ok(next.with_timezone(&Utc))
    }

    /// Due times in `(after, until]`, at most `limit` of them (the earliest).
    pub fn due_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            let next = self.next_after(t)?;
            if next > until {
                break;
            }
            out.push(next);
            t = next;
        }
        Ok(out)
    }
}
