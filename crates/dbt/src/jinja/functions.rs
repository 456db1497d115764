//! Context functions that need no node: `env_var`, `tojson`/`fromjson`/`fromyaml`/`toyaml`, `zip`, `set`,
//! `log`, `exceptions`, `modules.datetime`.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

/// `env_var(name, default)`: an environment variable; an error naming it when unset and no default is given.
pub(crate) fn env_var(name: String, default: Option<Value>) -> Result<Value, Error> {
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => match default {
            Some(d) if !d.is_undefined() => Ok(d),
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "env var required but not provided: `{name}` (set it, or give env_var a default)"
                ),
            )),
        },
    }
}

/// Serialise a Jinja value as Python's `json.dumps` would (`", "` and `": "` separators, insertion order).
pub(crate) fn to_py_json(value: &Value, sort_keys: bool, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&value.to_string()),
        ValueKind::String => {
            out.push_str(&serde_json::to_string(value.as_str().unwrap_or("")).unwrap_or_default())
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                to_py_json(&item, sort_keys, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            let mut keys: Vec<Value> = value.try_iter().into_iter().flatten().collect();
            if sort_keys {
                keys.sort();
            }
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let k = key
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| key.to_string());
                out.push_str(&serde_json::to_string(&k).unwrap_or_default());
                out.push_str(": ");
                to_py_json(&value.get_item(key).unwrap_or_default(), sort_keys, out);
            }
            out.push('}');
        }
        _ => out.push_str(&serde_json::to_string(&value.to_string()).unwrap_or_default()),
    }
}

/// `tojson(value, sort_keys=False)`.
pub(crate) fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    to_py_json(&value, sort_keys.unwrap_or(false), &mut out);
    Ok(Value::from(out))
}

/// `fromjson(text, default=None)`.
pub(crate) fn fromjson(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => Ok(json_to_value(&v)),
        Err(e) => match default {
            Some(d) => Ok(d),
            None => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("fromjson: {e}"),
            )),
        },
    }
}

/// `fromyaml(text, default=None)`, keeping mapping order.
pub(crate) fn fromyaml(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_norway::from_str::<serde_norway::Value>(&text) {
        Ok(v) => Ok(Value::from_serialize(&v)),
        Err(e) => match default {
            Some(d) => Ok(d),
            None => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("fromyaml: {e}"),
            )),
        },
    }
}

/// `toyaml(value)`.
pub(crate) fn toyaml(value: Value) -> Result<Value, Error> {
    serde_norway::to_string(&value)
        .map(Value::from)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("toyaml: {e}")))
}

/// A JSON value as a Jinja value.
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    Value::from_serialize(v)
}

/// `zip(a, b, ...)` as a list of lists.
pub(crate) fn zip(lists: Rest<Value>) -> Result<Value, Error> {
    let iters: Vec<Vec<Value>> = lists
        .iter()
        .map(|l| l.try_iter().map(|i| i.collect()))
        .collect::<Result<_, _>>()?;
    let len = iters.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..len)
            .map(|i| Value::from(iters.iter().map(|l| l[i].clone()).collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
    ))
}

/// `set(list)`: the distinct items, in first-seen order.
pub(crate) fn set(list: Value) -> Result<Value, Error> {
    let mut out: Vec<Value> = Vec::new();
    for item in list.try_iter()? {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(Value::from(out))
}

/// `log(msg, info=False)`: to tracing; renders as nothing.
pub(crate) fn log(msg: Value, info: Option<bool>) -> String {
    if info.unwrap_or(false) {
        tracing::info!(target: "dbt", "{msg}");
    } else {
        tracing::debug!(target: "dbt", "{msg}");
    }
    String::new()
}

/// The `exceptions` namespace.
#[derive(Debug)]
pub(crate) struct Exceptions;

impl Object for Exceptions {
    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let msg = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "raise_compiler_error" => Err(Error::new(ErrorKind::InvalidOperation, msg)),
            "raise_not_implemented" => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("not implemented: {msg}"),
            )),
            "warn" => {
                tracing::warn!(target: "dbt", "{msg}");
                Ok(Value::from(""))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("exceptions.{method} is not supported"),
            )),
        }
    }
}

/// The `modules` namespace (`modules.datetime`).
#[derive(Debug)]
pub(crate) struct Modules;

impl Object for Modules {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(DatetimeModule)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct DatetimeModule;

impl Object for DatetimeModule {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(DatetimeClass { date_only: false })),
            "date" => Some(Value::from_object(DatetimeClass { date_only: true })),
            _ => None,
        }
    }
}

/// `modules.datetime.datetime` / `.date`: callable constructors with `now`, `utcnow`, `today`, `strptime`.
#[derive(Debug)]
struct DatetimeClass {
    date_only: bool,
}

impl Object for DatetimeClass {
    fn call(self: &Arc<Self>, _state: &State, args: &[Value]) -> Result<Value, Error> {
        let n = |i: usize| -> Result<u32, Error> {
            args.get(i).map_or(Ok(0), |v| {
                u32::try_from(v.clone())
                    .map_err(|_| Error::new(ErrorKind::InvalidOperation, "datetime: bad argument"))
            })
        };
        let year = args
            .first()
            .and_then(|v| i32::try_from(v.clone()).ok())
            .ok_or_else(|| Error::new(ErrorKind::MissingArgument, "datetime: year is required"))?;
        let date = NaiveDate::from_ymd_opt(year, n(1)?, n(2)?)
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "datetime: invalid date"))?;
        let dt = date
            .and_hms_opt(n(3)?, n(4)?, n(5)?)
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "datetime: invalid time"))?;
        Ok(Value::from_object(DateTime {
            dt,
            date_only: self.date_only,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let dt = match method {
            "now" | "today" => chrono::Local::now().naive_local(),
            "utcnow" => chrono::Utc::now().naive_utc(),
            "strptime" => {
                let (text, fmt) = match args {
                    [a, b] => (a.to_string(), b.to_string()),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::MissingArgument,
                            "strptime(text, format)",
                        ));
                    }
                };
                NaiveDateTime::parse_from_str(&text, &fmt)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(&text, &fmt)
                            .map(|d| d.and_time(Default::default()))
                    })
                    .map_err(|e| {
                        Error::new(ErrorKind::InvalidOperation, format!("strptime: {e}"))
                    })?
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("modules.datetime: `{method}` is not supported yet"),
                ));
            }
        };
        Ok(Value::from_object(DateTime {
            dt,
            date_only: self.date_only,
        }))
    }
}

/// A Python-like datetime or date value.
#[derive(Debug)]
pub(crate) struct DateTime {
    pub dt: NaiveDateTime,
    pub date_only: bool,
}

impl DateTime {
    fn iso(&self, sep: char) -> String {
        if self.date_only {
            self.dt.format("%Y-%m-%d").to_string()
        } else if self.dt.nanosecond() == 0 {
            self.dt
                .format(&format!("%Y-%m-%d{sep}%H:%M:%S"))
                .to_string()
        } else {
            self.dt
                .format(&format!("%Y-%m-%d{sep}%H:%M:%S%.6f"))
                .to_string()
        }
    }
}

impl Object for DateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "year" => self.dt.year() as i64,
            "month" => self.dt.month() as i64,
            "day" => self.dt.day() as i64,
            "hour" => self.dt.hour() as i64,
            "minute" => self.dt.minute() as i64,
            "second" => self.dt.second() as i64,
            _ => return None,
        }))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => {
                let fmt = args.first().map(|v| v.to_string()).unwrap_or_default();
                Ok(Value::from(self.dt.format(&fmt).to_string()))
            }
            "isoformat" => Ok(Value::from(self.iso('T'))),
            "date" => Ok(Value::from_object(DateTime {
                dt: self.dt,
                date_only: true,
            })),
            "timestamp" => Ok(Value::from(self.dt.and_utc().timestamp() as f64)),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("datetime.{method} is not supported yet"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.iso(' '))
    }
}
