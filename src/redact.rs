//! Credentials never leave weir: every URL shown in a log line, an error, a metric label or
//! a dead-letter record goes through [`credentials`] first.
//!
//! A URL may carry a user and password (`https://user:secret@es:9200`), which is how some
//! users give them; weir sends them (as HTTP basic authentication) and shows
//! `https://user:***@es:9200`. Text from other libraries (an HTTP client's error, librdkafka's
//! log) goes through it too, since it may quote the URL.

use std::borrow::Cow;

/// What stands for a password.
pub const MASK: &str = "***";

/// `text` with the password of every URL in it replaced by `***` (`user:***@host`); a user
/// part without a password (`token@host`, often a token itself) becomes `***@host`.
pub fn credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        // The authority ends where the path, query or fragment starts, or the URL ends.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        // A password may hold an unescaped `@`: the host follows the last one.
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                if let Some((user, _)) = userinfo.split_once(':') {
                    out.push_str(user);
                    out.push(':');
                }
                out.push_str(MASK);
                out.push_str(&authority[userinfo_end..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One URL as it may be shown, also when it lacks its scheme (`user:secret@host:9200`, a
/// common mistake that configuration errors quote).
pub fn url(url: &str) -> Cow<'_, str> {
    if url.contains("://") || !url.contains('@') {
        return credentials(url);
    }
    let with_scheme = format!("x://{url}");
    Cow::Owned(credentials(&with_scheme)[4..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_wherever_they_stand() {
        let cases = [
            ("http://elastic:s3cret@es:9200", "http://elastic:***@es:9200"),
            ("https://u:p@ss@h/_bulk?x=1", "https://u:***@h/_bulk?x=1"),
            ("http://tok3n@h:1", "http://***@h:1"),
            (
                "error sending request for url (http://a:b@h/) then http://c:d@[::1]:9/x",
                "error sending request for url (http://a:***@h/) then http://c:***@[::1]:9/x",
            ),
            ("endpoint=\"http://a:b@h\"", "endpoint=\"http://a:***@h\""),
        ];
        for (text, want) in cases {
            assert_eq!(credentials(text), want);
        }
        for plain in ["http://es:9200/_bulk", "no url at all", "a@b.c", "ftp://h/a@b"] {
            assert!(matches!(credentials(plain), Cow::Borrowed(_)), "{plain}");
        }
        assert_eq!(url("u:pw@es:9200/x"), "u:***@es:9200/x");
        assert_eq!(url("http://u:pw@es"), "http://u:***@es");
        assert_eq!(url("es:9200"), "es:9200");
    }
}
