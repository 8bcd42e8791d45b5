//! `${VAR}` and `${VAR:-default}` interpolation of a pipeline file's text, before it is parsed.
//!
//! `$$` stands for a literal `$`. Lines whose first non-blank character is `#` are comments and
//! are left alone, so a commented-out `${VAR}` does not make a variable mandatory.

/// A reference to a variable that is not set and has no default.
#[derive(Debug, PartialEq, Eq)]
pub struct MissingVar {
    pub name: String,
    /// Byte offset of the `$` in the original text.
    pub offset: usize,
    pub message: String,
}

/// Expands variables in `text` using `lookup`. Returns the expanded text (a missing variable
/// expands to nothing, so that the rest of the file can still be checked) and every problem.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<MissingVar>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            line_start += line.len();
            continue;
        }
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                // Copy up to the next `$` in one go.
                let next = memchr::memchr(b'$', &bytes[i..]).map_or(bytes.len(), |p| i + p);
                out.push_str(&line[i..next]);
                i = next;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(b'{') => {
                    let Some(close) = line[i + 2..].find('}') else {
                        errors.push(MissingVar {
                            name: String::new(),
                            offset: line_start + i,
                            message: "unterminated `${`: expected `}` on the same line".into(),
                        });
                        out.push_str(&line[i..]);
                        break;
                    };
                    let inner = &line[i + 2..i + 2 + close];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    let valid_name = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid_name {
                        errors.push(MissingVar {
                            name: name.to_string(),
                            offset: line_start + i,
                            message: format!(
                                "invalid environment variable reference `${{{inner}}}`: names \
                                 are letters, digits and `_`"
                            ),
                        });
                    } else {
                        match (lookup(name), default) {
                            (Some(v), _) => out.push_str(&v),
                            (None, Some(d)) => out.push_str(d),
                            (None, None) => errors.push(MissingVar {
                                name: name.to_string(),
                                offset: line_start + i,
                                message: format!(
                                    "environment variable `{name}` is not set and has no \
                                     default (write `${{{name}:-default}}` to give one)"
                                ),
                            }),
                        }
                    }
                    i += 2 + close + 1;
                }
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
        }
        line_start += line.len();
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("es.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
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
}
