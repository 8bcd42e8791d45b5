//! `${VAR}` and `${VAR:-default}` interpolation of a pipeline file's text, before it is parsed.
//!
//! A variable's value is data, never configuration structure: where a reference stands
//! decides how its value is written, so that the parsed document holds the value itself and
//! nothing else.
//!
//! - In a `"..."` or `"""..."""` string, the value is escaped (`"`, `\`, line breaks and other
//!   control characters): the string holds the value exactly, whatever it contains.
//! - In a `'...'` or `'''...'''` string, which has no escapes, a value holding a `'` or a
//!   control character (a line break, in a one-line string) is an error naming the variable.
//! - Outside strings (`interval_ms = ${INTERVAL_MS:-250}`), the value must be one TOML
//!   number, boolean or date-time; anything else is an error naming the variable.
//! - In comments nothing is replaced, so a commented-out `${VAR}` does not make `VAR`
//!   mandatory.
//!
//! A default (`${VAR:-default}`) is part of the file and is written as it stands. `$$` stands
//! for a literal `$`. Errors never repeat a value, which may be a secret.

use std::ops::Range;

/// A reference that could not be replaced: a variable that is not set and has no default,
/// an invalid reference, or a value that does not fit where the reference stands.
#[derive(Debug, PartialEq, Eq)]
pub struct MissingVar {
    pub name: String,
    /// Byte offset of the `$` in the original text.
    pub offset: usize,
    pub message: String,
}

/// The expanded text, and where each replacement came from in the original.
#[derive(Debug, Default)]
pub struct Expansion {
    pub text: String,
    pub errors: Vec<MissingVar>,
    /// Each replacement: its range in the original text and in `text`, in order.
    replaced: Vec<(Range<usize>, Range<usize>)>,
}

impl Expansion {
    /// The offset in the original text of byte `offset` of the expanded text (the start of
    /// the reference, for an offset inside a replaced value).
    pub fn original_offset(&self, offset: usize) -> usize {
        let i = self.replaced.partition_point(|(_, out)| out.start <= offset);
        match i.checked_sub(1).map(|i| &self.replaced[i]) {
            None => offset,
            Some((orig, out)) if offset < out.end => orig.start,
            Some((orig, out)) => orig.end + (offset - out.end),
        }
    }
}

/// Expands variables in `text` using `lookup`. Returns the expanded text (a reference that
/// cannot be replaced expands to nothing, so that the rest of the file can still be checked)
/// and every problem.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<MissingVar>) {
    let e = expand(text, lookup);
    (e.text, e.errors)
}

/// Where a reference stands in the TOML text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Bare,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// As [`interpolate`], keeping the map from expanded to original offsets.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Expansion {
    let mut x = Expansion { text: String::with_capacity(text.len()), ..Expansion::default() };
    let bytes = text.as_bytes();
    let mut place = Place::Bare;
    // Start of the text not yet copied.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = |q: u8| bytes[i..].iter().take_while(|&&c| c == q).count();
        match (place, b) {
            (Place::Comment, b'\n') => place = Place::Bare,
            (Place::Comment, _) => {}
            (Place::Bare, b'#') => place = Place::Comment,
            (Place::Bare, b'"') if run(b'"') >= 3 => {
                place = Place::MultiBasic;
                i += 3;
                continue;
            }
            (Place::Bare, b'"') => place = Place::Basic,
            (Place::Bare, b'\'') if run(b'\'') >= 3 => {
                place = Place::MultiLiteral;
                i += 3;
                continue;
            }
            (Place::Bare, b'\'') => place = Place::Literal,
            (Place::Basic | Place::MultiBasic, b'\\') => {
                i += 2;
                continue;
            }
            (Place::Basic, b'"') | (Place::Literal, b'\'') => place = Place::Bare,
            (Place::Basic | Place::Literal, b'\n') => place = Place::Bare,
            (Place::MultiBasic, b'"') | (Place::MultiLiteral, b'\'') if run(b) >= 3 => {
                // Up to two more quotes before the closing three belong to the string.
                let n = run(b).min(5);
                i += n;
                place = Place::Bare;
                continue;
            }
            (_, b'$') => {
                if let Some(end) = reference(text, i, place, &lookup, &mut x, copied) {
                    copied = end;
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    x.text.push_str(&text[copied.min(text.len())..]);
    x
}

/// Replaces the reference (or `$$`) at `at`, first copying the text from `copied`. Returns
/// the offset just past it, or `None` when `at` starts no reference.
fn reference(
    text: &str,
    at: usize,
    place: Place,
    lookup: &impl Fn(&str) -> Option<String>,
    x: &mut Expansion,
    copied: usize,
) -> Option<usize> {
    let bytes = text.as_bytes();
    let end = match bytes.get(at + 1) {
        Some(b'$') => at + 2,
        Some(b'{') => {
            let line_end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |p| at + p);
            match text[at + 2..line_end].find('}') {
                Some(close) => at + 2 + close + 1,
                None => {
                    x.errors.push(MissingVar {
                        name: String::new(),
                        offset: at,
                        message: "unterminated `${`: expected `}` on the same line".into(),
                    });
                    return None;
                }
            }
        }
        _ => return None,
    };
    x.text.push_str(&text[copied..at]);
    let start = x.text.len();
    if end == at + 2 {
        x.text.push('$');
    } else {
        let inner = &text[at + 2..end - 1];
        match resolve(inner, place, lookup) {
            Ok(value) => x.text.push_str(&value),
            Err((name, message)) => x.errors.push(MissingVar { name, offset: at, message }),
        }
    }
    x.replaced.push((at..end, start..x.text.len()));
    Some(end)
}

/// The text that replaces `${inner}` at `place`, or (variable name, error).
fn resolve(
    inner: &str,
    place: Place,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, (String, String)> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err((
            name.to_string(),
            format!(
                "invalid environment variable reference `${{{inner}}}`: names are letters, \
                 digits and `_`"
            ),
        ));
    }
    let value = match (lookup(name), default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d.to_string()),
        (None, None) => {
            return Err((
                name.to_string(),
                format!(
                    "environment variable `{name}` is not set and has no default (write \
                     `${{{name}:-default}}` to give one)"
                ),
            ));
        }
    };
    place_value(&value, place).map_err(|why| {
        (name.to_string(), format!("environment variable `{name}` cannot be used here: {why}"))
    })
}

/// `value` written so that it stays one value at `place`, or why it cannot be.
fn place_value(value: &str, place: Place) -> Result<String, &'static str> {
    let control = |c: char, allowed: &[char]| c.is_control() && !allowed.contains(&c);
    match place {
        Place::Basic | Place::MultiBasic => Ok(escape_basic(value)),
        Place::Literal if value.chars().any(|c| c == '\'' || control(c, &['\t'])) => {
            Err("its value holds a `'` or a control character (such as a line break), which a \
             '...' string cannot hold; use a \"...\" string, which takes any value")
        }
        Place::MultiLiteral if value.chars().any(|c| c == '\'' || control(c, &['\t', '\n'])) => {
            Err("its value holds a `'` or a control character, which a '''...''' string \
                 cannot hold; use a \"...\" string, which takes any value")
        }
        Place::Literal | Place::MultiLiteral => Ok(value.to_string()),
        Place::Bare => {
            // A comment or a line break could swallow or add what follows on the line.
            let scalar = !value.contains(['#', '\n', '\r'])
                && matches!(
                    value.trim().parse::<toml_edit::Value>(),
                    Ok(toml_edit::Value::Integer(_)
                        | toml_edit::Value::Float(_)
                        | toml_edit::Value::Boolean(_)
                        | toml_edit::Value::Datetime(_))
                );
            if scalar {
                Ok(value.trim().to_string())
            } else {
                Err("outside quotes its value must be one TOML number, boolean or date-time, \
                     and it is not (put the reference in quotes to use the value as text)")
            }
        }
        // References in comments are never replaced.
        Place::Comment => Ok(String::new()),
    }
}

/// `value` as the inside of a TOML basic string.
fn escape_basic(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("es.local".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("9200".into()),
            "EVIL" => Some("x\"\n[sources.injected]\ntype = \"stdin\"\n#".into()),
            "QUOTE" => Some("it's".into()),
            _ => None,
        }
    }

    fn parsed(text: &str) -> toml_edit::DocumentMut {
        let x = expand(text, env);
        assert_eq!(x.errors, [], "{text}");
        x.text.parse().unwrap_or_else(|e| panic!("{}: {e}", x.text))
    }

    #[test]
    fn expands_defaults_and_escapes() {
        let text =
            "a = \"${HOST}:${PORT:-9200}\"\nb = \"$${HOST} $5 ${EMPTY:-x}\"\n# c = \"${NOPE}\"\n";
        assert_eq!(
            interpolate(text, env),
            ("a = \"es.local:9200\"\nb = \"${HOST} $5 \"\n# c = \"${NOPE}\"\n".to_string(), vec![])
        );
    }

    #[test]
    fn names_every_missing_variable_with_its_offset() {
        let (text, errs) = interpolate("x = 1\ny = \"${A}${B}\"\n", env);
        assert_eq!(text, "x = 1\ny = \"\"\n");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].name, "A");
        assert_eq!(errs[0].offset, 11);
        assert!(errs[1].message.contains("`B` is not set"), "{}", errs[1].message);
    }

    #[test]
    fn a_value_in_a_string_is_the_strings_value_whatever_it_holds() {
        for quoted in ["\"${EVIL}\"", "\"\"\"${EVIL}\"\"\""] {
            let doc = parsed(&format!("[sources.a]\npassword = {quoted}\n"));
            assert_eq!(doc["sources"].as_table().unwrap().len(), 1, "{quoted}");
            assert_eq!(doc["sources"]["a"]["password"].as_str(), env("EVIL").as_deref());
        }
        let doc = parsed("a = \"C:\\\\${QUOTE} ${HOST}\"\nb = 'lit ${HOST}'\n");
        assert_eq!(doc["a"].as_str(), Some("C:\\it's es.local"));
        assert_eq!(doc["b"].as_str(), Some("lit es.local"));
    }

    #[test]
    fn values_that_cannot_stay_one_value_are_errors_naming_the_variable() {
        for text in ["a = '${EVIL}'", "a = '${QUOTE}'", "a = '''${QUOTE}'''", "a = ${EVIL}"] {
            let x = expand(text, env);
            let names: Vec<&str> = x.errors.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names.len(), 1, "{text}: {:?}", x.errors);
            assert!(x.errors[0].message.contains("cannot be used here"), "{:?}", x.errors);
            assert!(!x.errors[0].message.contains("injected"), "the value is never repeated");
        }
        assert_eq!(parsed("a = ${PORT}\nb = ${X:-true}\n")["a"].as_integer(), Some(9200));
        assert_eq!(expand("a = ${HOST}", env).errors[0].name, "HOST");
    }

    #[test]
    fn comments_and_quotes_inside_strings_keep_their_meaning() {
        // `#` in a string is not a comment; a quote inside a string does not end it.
        let doc = parsed("a = \"#${HOST}\" # ${NOPE}\nb = \"\\\"${HOST}\"\nc = '''x''${HOST}'''\n");
        assert_eq!(doc["a"].as_str(), Some("#es.local"));
        assert_eq!(doc["b"].as_str(), Some("\"es.local"));
        assert_eq!(doc["c"].as_str(), Some("x''es.local"));
    }

    #[test]
    fn offsets_map_back_to_the_original_text() {
        let text = "a = \"${EVIL}\"\nb = 1x\n";
        let x = expand(text, env);
        let bad = x.text.find("1x").unwrap();
        assert_eq!(x.original_offset(bad), text.find("1x").unwrap());
        assert_eq!(x.original_offset(6), 5, "inside a value: the reference's `$`");
        assert_eq!(x.original_offset(2), 2);
    }
}
