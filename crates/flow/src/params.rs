//! Typed flow parameters: declaration, validation of given values, and backfill ranges (`2019-01..2020-12`).

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tripline_core::YearMonth;

use crate::error::{FlowError, Result};

/// Resolved parameter values of one flow run, by name; values are canonical JSON (months as `"2021-01"`).
pub type Params = BTreeMap<String, Json>;

/// The type of a flow parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    String,
    /// A 64-bit integer (also accepted as text, `"12"`).
    Int,
    /// `true` / `false`.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A calendar month, `YYYY-MM`.
    Month,
    /// One of the declared `values`.
    Enum,
}

impl ParamType {
    /// The name used in flow files (`month`, `enum`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Bool => "bool",
            Self::Date => "date",
            Self::Month => "month",
            Self::Enum => "enum",
        }
    }
}

/// Declaration of one parameter: its type, default and (for enums) allowed values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The parameter type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Default value; a parameter without one is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Json>,
    /// Allowed values of an `enum` parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// What the parameter means, for `flow list` and docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ParamSpec {
    /// A parameter of the given type with no default (required).
    pub fn new(kind: ParamType) -> Self {
        Self {
            kind,
            default: None,
            values: Vec::new(),
            description: None,
        }
    }

    /// An `enum` parameter with its allowed values.
    pub fn enumeration<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Self {
            values: values.into_iter().map(Into::into).collect(),
            ..Self::new(ParamType::Enum)
        }
    }

    /// Sets the default value.
    pub fn with_default(mut self, value: impl Into<Json>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Checks the declaration itself (enum has values, default fits the type).
    pub fn check(&self, name: &str) -> Result<()> {
        if self.kind == ParamType::Enum && self.values.is_empty() {
            return Err(FlowError::param(
                name,
                "an enum parameter needs `values: [...]`",
            ));
        }
        if self.kind != ParamType::Enum && !self.values.is_empty() {
            return Err(FlowError::param(
                name,
                "`values` is only allowed on `type: enum`",
            ));
        }
        if let Some(default) = &self.default {
            self.coerce(name, default).map_err(|e| match e {
                FlowError::Param { name, message } => {
                    FlowError::param(name, format!("bad default: {message}"))
                }
                other => other,
            })?;
        }
        Ok(())
    }

    /// Validates one value against the type and returns its canonical form.
    pub fn coerce(&self, name: &str, value: &Json) -> Result<Json> {
        let text = match value {
            Json::String(s) => Some(s.trim().to_string()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let bad =
            |expected: &str| FlowError::param(name, format!("expected {expected}, got {value}"));
        let Some(text) = text else {
            return Err(bad("a single value"));
        };
        match self.kind {
            ParamType::String => Ok(Json::String(text)),
            ParamType::Int => text
                .parse::<i64>()
                .map(Json::from)
                .map_err(|_| bad("an integer")),
            ParamType::Bool => match text.as_str() {
                "true" | "yes" | "1" => Ok(Json::Bool(true)),
                "false" | "no" | "0" => Ok(Json::Bool(false)),
                _ => Err(bad("true or false")),
            },
            ParamType::Date => NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map(|d| Json::String(d.format("%Y-%m-%d").to_string()))
                .map_err(|_| bad("a date like 2021-01-31")),
            ParamType::Month => parse_month(&text)
                .map(|m| Json::String(m.to_string()))
                .ok_or_else(|| bad("a month like 2021-01")),
            ParamType::Enum => {
                if self.values.contains(&text) {
                    Ok(Json::String(text))
                } else {
                    Err(bad(&format!("one of [{}]", self.values.join(", "))))
                }
            }
        }
    }

    /// Expands a backfill range into values: `2019-01..2020-12` (month), `2021-01-01..2021-01-31` (date),
    /// `1..5` (int, inclusive), or a comma list `yellow,green` for any type.
    pub fn expand(&self, name: &str, spec: &str) -> Result<Vec<Json>> {
        if let Some((from, to)) = spec.split_once("..") {
            let (from, to) = (from.trim(), to.trim());
            let bad = |m: String| FlowError::param(name, m);
            let values: Vec<Json> = match self.kind {
                ParamType::Month => {
                    let a = parse_month(from)
                        .ok_or_else(|| bad(format!("`{from}` is not a month like 2019-01")))?;
                    let b = parse_month(to)
                        .ok_or_else(|| bad(format!("`{to}` is not a month like 2020-12")))?;
                    let mut out = Vec::new();
                    let mut m = a;
                    while m <= b {
                        out.push(Json::String(m.to_string()));
                        m = m.next();
                    }
                    out
                }
                ParamType::Date => {
                    let p = |s: &str| {
                        NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .map_err(|_| bad(format!("`{s}` is not a date like 2021-01-31")))
                    };
                    let (a, b) = (p(from)?, p(to)?);
                    let mut out = Vec::new();
                    let mut d = a;
                    while d <= b {
                        out.push(Json::String(d.format("%Y-%m-%d").to_string()));
                        d = d
                            .checked_add_days(Days::new(1))
                            .ok_or_else(|| bad("date out of range".into()))?;
                    }
                    out
                }
                ParamType::Int => {
                    let p = |s: &str| {
                        s.parse::<i64>()
                            .map_err(|_| bad(format!("`{s}` is not an integer")))
                    };
                    (p(from)?..=p(to)?).map(Json::from).collect()
                }
                _ => {
                    return Err(bad(format!(
                        "a range `a..b` needs a month, date or int parameter, `{name}` is {}",
                        self.kind.name()
                    )));
                }
            };
            if values.is_empty() {
                return Err(FlowError::param(
                    name,
                    format!("range `{spec}` is empty (is it backwards?)"),
                ));
            }
            if values.len() > 10_000 {
                return Err(FlowError::param(
                    name,
                    format!(
                        "range `{spec}` has {} values; the limit is 10000",
                        values.len()
                    ),
                ));
            }
            Ok(values)
        } else {
            spec.split(',')
                .map(|v| self.coerce(name, &Json::String(v.trim().to_string())))
                .collect()
        }
    }
}

fn parse_month(text: &str) -> Option<YearMonth> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.is_empty() || m.len() > 2 {
        return None;
    }
    YearMonth::new(y.parse().ok()?, m.parse().ok()?)
}

/// Validates given values against the declarations: unknown names, missing required values and bad values are
/// errors; defaults fill the rest. Returns the canonical values.
pub fn resolve_params(specs: &BTreeMap<String, ParamSpec>, given: &Params) -> Result<Params> {
    for name in given.keys() {
        if !specs.contains_key(name) {
            let known: Vec<&str> = specs.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "this flow takes none".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            return Err(FlowError::param(
                name,
                format!("unknown parameter ({known})"),
            ));
        }
    }
    let mut out = Params::new();
    for (name, spec) in specs {
        let value = match (given.get(name), &spec.default) {
            (Some(v), _) => spec.coerce(name, v)?,
            (None, Some(d)) => spec.coerce(name, d)?,
            (None, None) => {
                return Err(FlowError::param(
                    name,
                    format!(
                        "missing required parameter (type {}); pass {name}=...",
                        spec.kind.name()
                    ),
                ));
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Parses `name=value` assignments (as given on a command line) into raw, not yet validated values.
pub fn parse_assignments<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Result<Params> {
    let mut out = Params::new();
    for item in items {
        let item = item.as_ref();
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| FlowError::param(item, "expected name=value"))?;
        out.insert(k.trim().to_string(), Json::String(v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_range_expands_inclusively_across_years() {
        let spec = ParamSpec::new(ParamType::Month);
        let v = spec.expand("month", "2019-01..2020-12").unwrap();
        assert_eq!(v.len(), 24);
        assert_eq!(v[0], "2019-01");
        assert_eq!(v[23], "2020-12");
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let mut specs = BTreeMap::new();
        specs.insert("month".to_string(), ParamSpec::new(ParamType::Month));
        specs.insert(
            "service".to_string(),
            ParamSpec::enumeration(["yellow", "green"]).with_default("yellow"),
        );
        let e = resolve_params(&specs, &parse_assignments(["month=2021-13"]).unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"param `month`: expected a month like 2021-01, got "2021-13""#
        );
        let e = resolve_params(&specs, &Params::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "param `month`: missing required parameter (type month); pass month=..."
        );
        let e = resolve_params(
            &specs,
            &parse_assignments(["month=2021-01", "service=blue"]).unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("one of [yellow, green]"), "{e}");
        let e = resolve_params(
            &specs,
            &parse_assignments(["month=2021-01", "colour=x"]).unwrap(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown parameter (known: month, service)"),
            "{e}"
        );
        let ok = resolve_params(&specs, &parse_assignments(["month=2021-1"]).unwrap()).unwrap();
        assert_eq!(ok["month"], "2021-01");
        assert_eq!(ok["service"], "yellow");
    }

    #[test]
    fn int_and_date_ranges() {
        assert_eq!(
            ParamSpec::new(ParamType::Int).expand("n", "1..3").unwrap(),
            vec![Json::from(1), Json::from(2), Json::from(3)]
        );
        assert_eq!(
            ParamSpec::new(ParamType::Date)
                .expand("d", "2020-02-28..2020-03-01")
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            ParamSpec::enumeration(["a", "b"])
                .expand("e", "a,b")
                .unwrap()
                .len(),
            2
        );
        assert!(
            ParamSpec::new(ParamType::Month)
                .expand("m", "2020-05..2020-01")
                .is_err()
        );
    }
}
