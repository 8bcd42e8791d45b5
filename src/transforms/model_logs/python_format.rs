//! Python's `logging.Formatter` format strings, read backwards: a format as an application
//! writes it (`"%(asctime)s - %(name)s - %(levelname)s - %(message)s"`, with its `datefmt`)
//! becomes a regular expression whose groups give the record's attributes back, mapped to ECS.
//!
//! The three styles of `logging.Formatter` (Python's `Lib/logging/__init__.py`,
//! `PercentStyle`, `StrFormatStyle`, `StringTemplateStyle`) are read: `%(name)-8s` with flags,
//! width and precision; `{name:<8}` with fill, alignment, width and precision; `$name` and
//! `${name}`. Every `LogRecord` attribute has a pattern of the text Python writes for it;
//! attributes the record does not define (`extra=`, or a server's own, such as uvicorn's
//! `client_addr`) match any text on one line. A record's traceback (`exc_text`, after a line
//! break) or stack (`stack_info`) is taken as `error.stack_trace`.
//!
//! | attribute | field |
//! |---|---|
//! | `asctime` (with `datefmt`, and `msecs` when the date format has no fraction), `created` | `@timestamp` |
//! | `levelname` (`levelno` when no name) | `log.level` |
//! | `name` | `log.logger` |
//! | `funcName`, `lineno`, `filename` | `log.origin.function`, `log.origin.file.line`, `log.origin.file.name` |
//! | `pathname`, `module` | `log.origin.file.path`, `log.origin.module` |
//! | `process`, `processName`, `thread`, `threadName` | `process.pid`, `process.name`, `process.thread.id`, `process.thread.name` |
//! | `taskName`, `relativeCreated`, `msecs`, `levelno` | `python.task_name`, `python.relative_created_ms`, `python.msecs`, `python.levelno` |
//! | `message` | `message` (a traceback after it: `error.stack_trace`, `error.type`, `error.message`) |
//! | any other name | a top-level key of that name (text) |

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use ordered_float::NotNan;
use regex::Regex;
use vrl::value::Value;

use crate::transforms::parse_timestamp::TimestampParser;

/// The three format styles of `logging.Formatter(style=...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Percent,
    Brace,
    Dollar,
}

impl Style {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "%" => Self::Percent,
            "{" => Self::Brace,
            "$" => Self::Dollar,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    None,
    Left,
    Right,
    Center,
}

/// One `%(...)s`, `{...}` or `$...` of a format.
#[derive(Debug)]
struct Field {
    name: String,
    align: Align,
    fill: char,
    /// A width was given: padding may surround the value.
    padded: bool,
    /// `.N` on a string: the value may be cut to N characters.
    cut: Option<usize>,
    /// `r` / `a` conversion: the value is written as a Python `repr` in quotes.
    quoted: bool,
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A compiled format: reads a formatted record back into fields.
pub struct PythonFormat {
    regex: Regex,
    /// Group `f{i}` holds attribute `names[i]`.
    names: Vec<String>,
    asctime: TimestampParser,
    /// The date format writes a fraction of a second itself (the default `,%03d` does).
    asctime_has_fraction: bool,
}

/// What a format read from a line: attribute names and the text Python wrote for each.
pub struct Record<'a> {
    pub attrs: Vec<(&'a str, &'a str)>,
    /// The traceback or stack written after the record, without its leading line break.
    pub trace: Option<&'a str>,
}

impl<'a> Record<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

impl PythonFormat {
    /// Compiles `format` in `style`; `datefmt` as given to the formatter (`None`: Python's
    /// default `%Y-%m-%d %H:%M:%S` followed by `,` and milliseconds); `timezone` for the times
    /// written without a zone.
    pub fn new(
        format: &str,
        style: Style,
        datefmt: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<Self, String> {
        let pieces = match style {
            Style::Percent => percent_pieces(format)?,
            Style::Brace => brace_pieces(format)?,
            Style::Dollar => dollar_pieces(format)?,
        };
        let (date_re, chrono_fmt, has_fraction) = match datefmt {
            None => (
                r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}".to_string(),
                "%Y-%m-%d %H:%M:%S,%3f".to_string(),
                true,
            ),
            Some(d) => (strftime_regex(d)?, d.to_string(), false),
        };
        let mut pattern = String::from("(?s)^");
        let mut names = Vec::new();
        let fields = pieces.iter().filter(|p| matches!(p, Piece::Field(_))).count();
        let mut seen = 0;
        for piece in &pieces {
            match piece {
                Piece::Text(t) => pattern.push_str(&regex::escape(t)),
                Piece::Field(f) => {
                    seen += 1;
                    let last = seen == fields && matches!(pieces.last(), Some(Piece::Field(_)));
                    let value = match f.name.as_str() {
                        "asctime" => date_re.clone(),
                        _ => value_pattern(&f.name, last),
                    };
                    let value = match f.cut {
                        // A cut value is any prefix of at most N characters.
                        Some(n) => format!(r"[^\n]{{0,{n}}}?"),
                        None => value,
                    };
                    let group = format!("(?P<f{}>{value})", names.len());
                    let group = if f.quoted { format!("'{group}'") } else { group };
                    let fill = format!("(?:{})*", regex::escape(&f.fill.to_string()));
                    let (before, after) = match (f.padded, f.align) {
                        (false, _) => ("", ""),
                        (true, Align::Left) => ("", fill.as_str()),
                        (true, Align::Right) => (fill.as_str(), ""),
                        (true, Align::Center) => (fill.as_str(), fill.as_str()),
                        // No alignment given: Python right-aligns numbers and, in `{}`,
                        // left-aligns strings; either side may hold the padding.
                        (true, Align::None) => (fill.as_str(), fill.as_str()),
                    };
                    pattern.push_str(before);
                    pattern.push_str(&group);
                    pattern.push_str(after);
                    names.push(f.name.clone());
                }
            }
        }
        // `Formatter.format` appends the traceback and the stack after a line break.
        pattern.push_str(
            r"(?:\n(?P<trace>(?:Traceback \(most recent call last\):|Stack \(most recent call last\):)\n.*))?$",
        );
        let regex =
            super::grammars::compile(&pattern).map_err(|e| format!("format `{format}`: {e}"))?;
        let asctime = TimestampParser::new(&[chrono_fmt.as_str()], timezone)?;
        Ok(Self { regex, names, asctime, asctime_has_fraction: has_fraction })
    }

    /// Reads `line`; `None` when it is not of this format.
    /// Is `line` of this format? Cheaper than [`PythonFormat::read`]: no captures.
    pub fn matches(&self, line: &str) -> bool {
        self.regex.is_match(line)
    }

    pub fn read<'a>(&'a self, line: &'a str) -> Option<Record<'a>> {
        let c = self.regex.captures(line)?;
        let attrs = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| c.get(i + 1).map(|m| (n.as_str(), m.as_str())))
            .collect();
        let mut record = Record { attrs, trace: c.name("trace").map(|m| m.as_str()) };
        // A last `message` took the traceback too: split it off.
        if record.trace.is_none()
            && let Some(pos) = record.attrs.iter().position(|(n, _)| *n == "message")
        {
            let msg = record.attrs[pos].1;
            if let Some(i) = msg.find("\nTraceback (most recent call last):\n") {
                record.attrs[pos].1 = &msg[..i];
                record.trace = Some(&msg[i + 1..]);
            }
        }
        Some(record)
    }

    /// When the record was made: `created` if written, else `asctime` (with `msecs` when the
    /// date format has no fraction of its own).
    pub fn time(&self, record: &Record) -> Option<DateTime<Utc>> {
        if let Some(micros) = record.get("created").and_then(decimal_micros) {
            return DateTime::from_timestamp_micros(micros);
        }
        let t = self.asctime.parse_text(record.get("asctime")?)?;
        if self.asctime_has_fraction {
            return Some(t);
        }
        match record.get("msecs").and_then(|m| m.trim().parse::<f64>().ok()) {
            Some(ms) if (0.0..1000.0).contains(&ms) => {
                Some(t + Duration::microseconds((ms * 1000.0).round() as i64))
            }
            _ => Some(t),
        }
    }
}

/// `1733544000.1234567` as microseconds, from the decimal digits (rounded half up), so that
/// no binary fraction moves a time by a microsecond.
fn decimal_micros(text: &str) -> Option<i64> {
    let text = text.trim();
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut micros: i64 = 0;
    for i in 0..6 {
        micros = micros * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    let round_up = frac.as_bytes().get(6).is_some_and(|b| *b >= b'5');
    secs.checked_mul(1_000_000)?.checked_add(micros + i64::from(round_up))
}

/// The ECS field of a standard attribute, and whether its value is an integer.
pub fn ecs_field(attr: &str) -> Option<(&'static str, Kind)> {
    Some(match attr {
        "levelname" => ("log.level", Kind::Text),
        "name" => ("log.logger", Kind::Text),
        "funcName" => ("log.origin.function", Kind::Text),
        "lineno" => ("log.origin.file.line", Kind::Int),
        "filename" => ("log.origin.file.name", Kind::Text),
        "pathname" => ("log.origin.file.path", Kind::Text),
        "module" => ("log.origin.module", Kind::Text),
        "process" => ("process.pid", Kind::Int),
        "processName" => ("process.name", Kind::Text),
        "thread" => ("process.thread.id", Kind::Int),
        "threadName" => ("process.thread.name", Kind::Text),
        "taskName" => ("python.task_name", Kind::Text),
        "relativeCreated" => ("python.relative_created_ms", Kind::Float),
        "msecs" => ("python.msecs", Kind::Float),
        "levelno" => ("python.levelno", Kind::Int),
        "message" => ("message", Kind::Text),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
}

/// The value of `text` as `kind`; `None` for Python's `None` (no process or thread id).
pub fn typed(text: &str, kind: Kind) -> Option<Value> {
    let t = text.trim();
    match kind {
        Kind::Text => Some(Value::Bytes(Bytes::copy_from_slice(text.as_bytes()))),
        Kind::Int => t.parse::<i64>().ok().map(Value::Integer),
        Kind::Float => t.parse::<f64>().ok().and_then(|f| NotNan::new(f).ok()).map(Value::Float),
    }
}

/// What Python writes for each attribute, as a pattern that stops at the next literal.
fn value_pattern(name: &str, last: bool) -> String {
    match name {
        "levelname" => r"[A-Z]+|Level \d+".into(),
        "levelno" | "lineno" => r"\d+".into(),
        "process" | "thread" => r"\d+|None".into(),
        "created" | "relativeCreated" | "msecs" => r"\d+(?:\.\d+)?(?:e[-+]?\d+)?".into(),
        "name" | "processName" | "taskName" | "pathname" => r"\S+?".into(),
        "filename" => r"[^\s/]+?".into(),
        "module" | "funcName" => r"[\w.<>-]+?".into(),
        // `Thread-3 (worker)`: Python 3.10 names threads after their target.
        "threadName" => r"\S+?(?: \([^)\n]*\))?".into(),
        // uvicorn's own attributes (`uvicorn/logging.py`: the level padded after its colon,
        // `host:port`, the request line, the status with its phrase).
        "levelprefix" => r"[A-Z]+: *".into(),
        "client_addr" => r"\S+".into(),
        "request_line" => r#"[A-Z]+ [^"\s]+(?: HTTP/[\d.]+)?"#.into(),
        "status_code" => r"\d{3}(?: [^\n]*?)?".into(),
        "message" if last => ".*".into(),
        "message" => ".*?".into(),
        _ => r"[^\n]*?".into(),
    }
}

/// `%(name)-8s`: Python's `PercentStyle.validation_pattern`.
fn percent_pieces(format: &str) -> Result<Vec<Piece>, String> {
    let re = Regex::new(r"^%\((?P<name>[^)]*)\)(?P<flags>[#0+ -]*)(?P<width>\d+)?(?:\.(?P<prec>\d+))?(?P<conv>[diouxXeEfFgGcrsa])").map_err(|e| e.to_string())?;
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("%%") {
            text.push('%');
            rest = r;
            continue;
        }
        let c = re.captures(rest).ok_or_else(|| {
            format!("`{}` is not a %-style field", rest.chars().take(12).collect::<String>())
        })?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        let flags = c.name("flags").map_or("", |m| m.as_str());
        let conv = &c["conv"];
        let numeric = !matches!(conv, "s" | "r" | "a" | "c");
        let align = if flags.contains('-') {
            Align::Left
        } else if c.name("width").is_some() {
            Align::Right
        } else {
            Align::None
        };
        pieces.push(Piece::Field(Field {
            name: c["name"].to_string(),
            align,
            fill: if flags.contains('0') && numeric && align != Align::Left { '0' } else { ' ' },
            padded: c.name("width").is_some() || flags.contains(' ') || flags.contains('+'),
            cut: c.name("prec").filter(|_| !numeric).and_then(|p| p.as_str().parse().ok()),
            quoted: matches!(conv, "r" | "a"),
        }));
        rest = &rest[c.get(0).map_or(0, |m| m.end())..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// `{name!r:*^10.3}`: `str.format` replacement fields with a format spec.
fn brace_pieces(format: &str) -> Result<Vec<Piece>, String> {
    let spec_re = Regex::new(r"^(?:(?P<fill>.)?(?P<align>[<>^=]))?(?P<sign>[-+ ])?#?(?P<zero>0)?(?P<width>\d+)?[,_]?(?:\.(?P<prec>\d+))?(?P<ty>[bcdeEfFgGnosxX%])?$").map_err(|e| e.to_string())?;
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '{' if chars.peek().map(|c| c.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|c| c.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let end = format[i..].find('}').ok_or("a `{` is not closed")? + i;
                let inner = &format[i + 1..end];
                while chars.peek().is_some_and(|c| c.0 <= end) {
                    chars.next();
                }
                let (head, spec) = inner.split_once(':').unwrap_or((inner, ""));
                let (name, conv) = head.split_once('!').unwrap_or((head, ""));
                let c = spec_re
                    .captures(spec)
                    .ok_or_else(|| format!("`{{{inner}}}`: format spec not understood"))?;
                let ty = c.name("ty").map_or("", |m| m.as_str());
                let numeric = !matches!(ty, "" | "s");
                let align = match c.name("align").map(|m| m.as_str()) {
                    Some("<") => Align::Left,
                    Some(">") | Some("=") => Align::Right,
                    Some("^") => Align::Center,
                    _ => Align::None,
                };
                let zero = c.name("zero").is_some();
                let fill = c
                    .name("fill")
                    .and_then(|m| m.as_str().chars().next())
                    .unwrap_or(if zero && align == Align::None { '0' } else { ' ' });
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Field(Field {
                    name: name.to_string(),
                    align,
                    fill,
                    padded: c.name("width").is_some(),
                    cut: c.name("prec").filter(|_| !numeric).and_then(|p| p.as_str().parse().ok()),
                    quoted: matches!(conv, "r" | "a"),
                }));
            }
            '}' => return Err("a single `}` in a `{`-style format".into()),
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// `$name`, `${name}` and `$$`: `string.Template`.
fn dollar_pieces(format: &str) -> Result<Vec<Piece>, String> {
    let re = Regex::new(r"^\$(?:\{(?P<b>[_a-zA-Z][_a-zA-Z0-9]*)\}|(?P<n>[_a-zA-Z][_a-zA-Z0-9]*))")
        .map_err(|e| e.to_string())?;
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            text.push('$');
            rest = r;
            continue;
        }
        let c = re.captures(rest).ok_or("a `$` names no field")?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        let name = c.name("b").or(c.name("n")).map_or("", |m| m.as_str());
        pieces.push(Piece::Field(Field {
            name: name.to_string(),
            align: Align::None,
            fill: ' ',
            padded: false,
            cut: None,
            quoted: false,
        }));
        rest = &rest[c.get(0).map_or(0, |m| m.end())..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// A pattern for the text `time.strftime(datefmt)` writes (the C library's directives).
fn strftime_regex(datefmt: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = datefmt.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push_str(&regex::escape(&ch.to_string()));
            continue;
        }
        let d = chars.next().ok_or("datefmt ends with `%`")?;
        out.push_str(match d {
            'Y' => r"\d{4}",
            'y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'I' | 'C' | 'U' | 'W' | 'V' | 'g' => r"\d{2}",
            'G' => r"\d{4}",
            'e' | 'k' | 'l' => r"[ \d]\d",
            'j' => r"\d{3}",
            'u' | 'w' => r"\d",
            'f' => r"\d{6}",
            'b' | 'h' | 'a' => r"[A-Za-z]{3}",
            'B' | 'A' => r"[A-Za-z]+",
            'p' => r"AM|PM|am|pm",
            'z' => r"[-+]\d{4}",
            'Z' => r"[A-Za-z]*",
            's' => r"\d+",
            'T' => r"\d{2}:\d{2}:\d{2}",
            'R' => r"\d{2}:\d{2}",
            'D' => r"\d{2}/\d{2}/\d{2}",
            'F' => r"\d{4}-\d{2}-\d{2}",
            'c' => r"[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}",
            '%' => "%",
            other => return Err(format!("datefmt directive `%{other}` is not supported")),
        });
    }
    Ok(format!("(?:{out})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(fmt: &str, style: Style, datefmt: Option<&str>, line: &str) -> Vec<(String, String)> {
        let f = PythonFormat::new(fmt, style, datefmt, Some("UTC")).unwrap();
        let r = f.read(line).unwrap_or_else(|| panic!("`{line}` not read by `{fmt}`"));
        r.attrs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn percent_with_widths() {
        let got = read(
            "%(asctime)s %(levelname)-8s [%(name)12s] %(message)s",
            Style::Percent,
            None,
            "2026-05-01 10:00:00,123 INFO     [      app.db] connected to db: ok",
        );
        assert_eq!(got[1], ("levelname".into(), "INFO".into()));
        assert_eq!(got[2], ("name".into(), "app.db".into()));
        assert_eq!(got[3], ("message".into(), "connected to db: ok".into()));
    }

    #[test]
    fn brace_and_dollar() {
        let got = read("{levelname:^9}|{name}|{message}", Style::Brace, None, "  ERROR  |a.b|boom");
        assert_eq!(got[0].1, "ERROR");
        let got = read("$levelname ${name}: $message $$", Style::Dollar, None, "WARNING x: y z $");
        assert_eq!(got[2].1, "y z");
    }

    #[test]
    fn datefmt_and_msecs_make_the_time() {
        let f = PythonFormat::new(
            "%(asctime)s.%(msecs)03d %(message)s",
            Style::Percent,
            Some("%d/%b/%Y %H:%M:%S"),
            Some("UTC"),
        )
        .unwrap();
        let r = f.read("07/Dec/2026 04:10:00.042 hello").unwrap();
        assert_eq!(f.time(&r).unwrap().to_rfc3339(), "2026-12-07T04:10:00.042+00:00");
    }

    #[test]
    fn traceback_after_a_middle_message() {
        let f =
            PythonFormat::new("%(message)s [%(filename)s:%(lineno)d]", Style::Percent, None, None)
                .unwrap();
        let r = f
            .read("failed [app.py:3]\nTraceback (most recent call last):\n  File \"x\"\nValueError: v")
            .unwrap();
        assert_eq!(r.get("message"), Some("failed"));
        assert!(r.trace.unwrap().ends_with("ValueError: v"));
    }

    #[test]
    fn bad_formats_are_errors() {
        assert!(PythonFormat::new("%(name", Style::Percent, None, None).is_err());
        assert!(PythonFormat::new("{name", Style::Brace, None, None).is_err());
        assert!(PythonFormat::new("%(asctime)s", Style::Percent, Some("%Q"), None).is_err());
    }
}
