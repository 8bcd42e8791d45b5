//! `parse_timestamp`: text to a timestamp, for the formats model servers actually write.
//!
//! Formats are chrono `strftime` strings, tried in order, plus the names `rfc3339`,
//! `rfc2822`, `unix` (seconds), `unix_ms` and `unix_us`. Python's `2018-10-15 13:56:18,976`
//! is `%Y-%m-%d %H:%M:%S,%3f`; glog's (Triton) `0520 20:03:25.829575` is `%m%d %H:%M:%S%.6f`.
//!
//! Formats without a zone are read in `timezone` (default: the machine's local zone).
//! Formats without a year take the current year in that zone, or the previous one when that
//! would put the time more than a day in the future (a December line read in January), as
//! rsyslog and Vector do for syslog.

use bytes::Bytes;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, Local, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use vrl::value::Value;

use super::parse::{ParseOptions, ParseTransform, Parser};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "parse_timestamp"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseTimestampConfig {
    /// Formats tried in order.
    pub formats: Vec<String>,
    /// Zone for formats that carry none: `local` (default), `UTC`, or an IANA name.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The field to read. Default `timestamp`.
    #[serde(default = "default_field")]
    pub field: String,
    /// Where the timestamp goes. Default `@timestamp`.
    #[serde(default = "default_target")]
    pub target: String,
    /// Send events whose field does not parse to the `<id>.errors` output instead of passing
    /// them on with an `error.message` field. Default false.
    #[serde(default)]
    pub drop_on_error: bool,
}

fn default_field() -> String {
    "timestamp".into()
}
fn default_target() -> String {
    "@timestamp".into()
}

#[derive(Debug, Clone, Copy)]
enum Zone {
    Local,
    Named(Tz),
}

#[derive(Debug, Clone)]
enum Format {
    Rfc3339,
    Rfc2822,
    Unix(u32),
    /// A strftime format; `zoned` when it has a zone, `needs_year` when it has no year.
    Strftime {
        fmt: String,
        zoned: bool,
        needs_year: bool,
    },
}

impl TransformComponent for ParseTimestampConfig {
    type Built = ParseTransform<TimestampParser>;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(
        &self,
        metrics: &ComponentMetrics,
    ) -> Result<ParseTransform<TimestampParser>, ConfigIssue> {
        let zone = match self.timezone.as_deref() {
            None | Some("local") => Zone::Local,
            Some(name) => Zone::Named(name.parse::<Tz>().map_err(|_| {
                ConfigIssue::field("timezone", format!("unknown time zone `{name}`: use `local`, `UTC` or an IANA name like `Europe/Berlin`"))
            })?),
        };
        if self.formats.is_empty() {
            return Err(ConfigIssue::field("formats", "give at least one format"));
        }
        let formats = self
            .formats
            .iter()
            .map(|f| parse_format(f).map_err(|e| ConfigIssue::field("formats", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let options = ParseOptions {
            field: self.field.clone(),
            target: Some(self.target.clone()),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new(
            "parse_timestamp",
            TimestampParser { formats, zone, now: Utc::now },
            &options,
            metrics,
        )
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

fn parse_format(f: &str) -> Result<Format, String> {
    Ok(match f {
        "rfc3339" | "iso8601" => Format::Rfc3339,
        "rfc2822" => Format::Rfc2822,
        "unix" => Format::Unix(0),
        "unix_ms" => Format::Unix(3),
        "unix_us" => Format::Unix(6),
        "unix_ns" => Format::Unix(9),
        _ => {
            let items: Vec<Item<'_>> = StrftimeItems::new(f).collect();
            if items.iter().any(|i| matches!(i, Item::Error)) {
                return Err(format!("invalid strftime format `{f}`"));
            }
            let has = |specs: &[&str]| specs.iter().any(|s| f.contains(s));
            let zoned = has(&["%z", "%:z", "%::z", "%#z", "%Z", "%+", "%s"]);
            let needs_year =
                !has(&["%Y", "%y", "%G", "%g", "%C", "%+", "%s", "%F", "%D", "%x", "%c"]);
            Format::Strftime { fmt: f.to_string(), zoned, needs_year }
        }
    })
}

/// The timestamp parser.
pub struct TimestampParser {
    formats: Vec<Format>,
    zone: Zone,
    now: fn() -> DateTime<Utc>,
}

impl TimestampParser {
    /// A parser for other transforms to reuse (the model-server grammars): `formats` as in
    /// the config, `timezone` as `local`, `UTC` or an IANA name (`None` is local).
    pub fn new(formats: &[&str], timezone: Option<&str>) -> Result<Self, String> {
        let zone = match timezone {
            None | Some("local") => Zone::Local,
            Some(name) => {
                Zone::Named(name.parse::<Tz>().map_err(|_| format!("unknown time zone `{name}`"))?)
            }
        };
        let formats = formats.iter().map(|f| parse_format(f)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { formats, zone, now: Utc::now })
    }

    /// Replaces the clock that resolves year-less formats (for tests).
    pub fn with_clock(mut self, now: fn() -> DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    /// The first format that reads `text`, resolved to UTC.
    pub fn parse_text(&self, text: &str) -> Option<DateTime<Utc>> {
        self.formats.iter().find_map(|f| self.try_format(text.trim(), f))
    }

    fn localize(&self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => {
                Local.from_local_datetime(&naive).earliest().map(|d| d.with_timezone(&Utc))
            }
            Zone::Named(tz) => {
                tz.from_local_datetime(&naive).earliest().map(|d| d.with_timezone(&Utc))
            }
        }
    }

    fn current_year(&self, now: DateTime<Utc>) -> i32 {
        match self.zone {
            Zone::Local => now.with_timezone(&Local).year(),
            Zone::Named(tz) => now.with_timezone(&tz).year(),
        }
    }

    fn try_format(&self, text: &str, format: &Format) -> Option<DateTime<Utc>> {
        match format {
            Format::Rfc3339 => {
                DateTime::parse_from_rfc3339(text).ok().map(|d| d.with_timezone(&Utc))
            }
            Format::Rfc2822 => {
                DateTime::parse_from_rfc2822(text).ok().map(|d| d.with_timezone(&Utc))
            }
            Format::Unix(scale) => {
                let v: f64 = text.parse().ok()?;
                let nanos = v * 10f64.powi(9 - *scale as i32);
                if !nanos.is_finite() || nanos.abs() > i64::MAX as f64 {
                    return None;
                }
                Some(DateTime::from_timestamp_nanos(nanos as i64))
            }
            Format::Strftime { fmt, zoned: true, .. } => {
                DateTime::parse_from_str(text, fmt).ok().map(|d| d.with_timezone(&Utc))
            }
            Format::Strftime { fmt, zoned: false, needs_year: false } => {
                NaiveDateTime::parse_from_str(text, fmt).ok().and_then(|n| self.localize(n))
            }
            Format::Strftime { fmt, zoned: false, needs_year: true } => {
                let now = (self.now)();
                let year = self.current_year(now);
                let with_year = |y: i32| {
                    NaiveDateTime::parse_from_str(&format!("{y} {text}"), &format!("%Y {fmt}"))
                        .ok()
                        .and_then(|n| self.localize(n))
                };
                let this_year = with_year(year)?;
                if this_year > now + chrono::Duration::days(1) {
                    with_year(year - 1)
                } else {
                    Some(this_year)
                }
            }
        }
    }
}

impl Parser for TimestampParser {
    fn parse(&mut self, input: &Bytes) -> Result<Value, String> {
        let text = std::str::from_utf8(input).map_err(|_| "not valid UTF-8".to_string())?.trim();
        self.formats
            .iter()
            .find_map(|f| self.try_format(text, f))
            .map(Value::Timestamp)
            .ok_or_else(|| format!("`{text}` matches none of the formats"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(formats: &[&str], tz: &str, now: fn() -> DateTime<Utc>) -> TimestampParser {
        TimestampParser {
            formats: formats.iter().map(|f| parse_format(f).unwrap()).collect(),
            zone: Zone::Named(tz.parse().unwrap()),
            now,
        }
    }

    fn ts(p: &mut TimestampParser, s: &str) -> String {
        match p.parse(&Bytes::copy_from_slice(s.as_bytes())).unwrap() {
            Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            other => panic!("{other:?}"),
        }
    }

    fn mid_year() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    fn early_january() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()
    }

    #[test]
    fn python_and_glog_shapes() {
        let mut p = parser(&["%Y-%m-%d %H:%M:%S,%3f", "%m%d %H:%M:%S%.6f"], "UTC", mid_year);
        assert_eq!(ts(&mut p, "2018-10-15 13:56:18,976"), "2018-10-15T13:56:18.976000Z");
        assert_eq!(ts(&mut p, "0520 20:03:25.829575"), "2026-05-20T20:03:25.829575Z");
    }

    #[test]
    fn year_rolls_back_across_new_year() {
        let mut p = parser(&["%m-%d %H:%M:%S"], "UTC", early_january);
        assert_eq!(ts(&mut p, "12-31 23:59:00"), "2025-12-31T23:59:00.000000Z");
        assert_eq!(ts(&mut p, "01-01 10:00:00"), "2026-01-01T10:00:00.000000Z");
    }

    #[test]
    fn zone_is_applied_to_zoneless_text() {
        let mut p = parser(&["%Y-%m-%d %H:%M:%S"], "Europe/Berlin", mid_year);
        assert_eq!(ts(&mut p, "2024-04-13 02:03:49"), "2024-04-13T00:03:49.000000Z");
        let mut p = parser(&["%Y-%m-%dT%H:%M:%S%z"], "UTC", mid_year);
        assert_eq!(ts(&mut p, "2024-04-13T02:03:49+0000"), "2024-04-13T02:03:49.000000Z");
        let mut p = parser(&["unix_ms"], "UTC", mid_year);
        assert_eq!(ts(&mut p, "1661485379000"), "2022-08-26T03:42:59.000000Z");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut p = parser(&["%Y", "unix", "rfc3339"], "UTC", mid_year);
        for s in ["", "nope", "99999999999999999999999", "1e400"] {
            assert!(p.parse(&Bytes::copy_from_slice(s.as_bytes())).is_err(), "{s}");
        }
    }
}
