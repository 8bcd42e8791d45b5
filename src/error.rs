//! How components fail, as types: a config problem found by a component's check, a build
//! that could not do its I/O, a task that stopped. Each carries its cause; the topology adds
//! which component it was and reports it once.
//!
//! Invariant: this module depends on nothing else of weir, so every layer can use it.

use std::future::Future;
use std::pin::Pin;

/// A component's running task. `Err` says why it stopped; the topology logs it with the
/// component's id, so the component does not log it itself.
pub type Task = Pin<Box<dyn Future<Output = Result<(), ComponentError>> + Send + 'static>>;

/// A problem found by a component's own check, located by the field it concerns (the loader
/// turns it into a [`crate::config::ConfigError`] with the file position of that field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigIssue {
    /// The field (dotted for nested tables, e.g. `multiline.start_pattern`), if one is to blame.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigIssue {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_string()), message: message.into() }
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }
}

/// Why a component could not be built: what it was doing and the error it met.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The config did not pass its check (a build reached without loading, as in tests).
    #[error("{}", join_issues(.0))]
    Config(Vec<ConfigIssue>),
    /// A file or directory the component needs (checkpoints, a buffer, a certificate).
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A socket that could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A client library refused its settings (Kafka, HTTP, TLS).
    #[error("{what}: {message}")]
    Client { what: &'static str, message: String },
}

impl From<ConfigIssue> for BuildError {
    fn from(issue: ConfigIssue) -> Self {
        Self::Config(vec![issue])
    }
}

impl From<Vec<ConfigIssue>> for BuildError {
    fn from(issues: Vec<ConfigIssue>) -> Self {
        Self::Config(issues)
    }
}

fn join_issues(issues: &[ConfigIssue]) -> String {
    let parts: Vec<String> = issues
        .iter()
        .map(|i| match &i.field {
            Some(f) => format!("{f}: {}", i.message),
            None => i.message.clone(),
        })
        .collect();
    parts.join("; ")
}

/// Why a running component stopped before its input ended (or before shutdown).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// Writing to its destination failed and the component cannot go on (stdout closed, a
    /// disk full, a file that cannot be opened).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A peer or a client library failed for good (a Kafka consumer that cannot be created).
    #[error("{what}: {message}")]
    Peer { what: &'static str, message: String },
    /// The thread a blocking component runs on panicked or was cancelled.
    #[error("its thread failed: {0}")]
    Thread(String),
    /// Its output was closed by the reader (`weir run | head` once `head` has exited): not a
    /// failure; weir stops as a filter whose reader left does, exiting 0.
    #[error("{0} was closed by its reader")]
    OutputClosed(&'static str),
}

impl ComponentError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

/// Keeps the value of a check that compiled, or records its error as an issue of `field`:
/// a `check` compiles each part once and still reports every problem.
pub fn keep<T, E: std::fmt::Display>(
    issues: &mut Vec<ConfigIssue>,
    field: &str,
    result: Result<T, E>,
) -> Option<T> {
    result.map_err(|e| issues.push(ConfigIssue::field(field, e.to_string()))).ok()
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
