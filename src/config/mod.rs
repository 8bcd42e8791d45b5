//! Pipeline configuration: TOML files shaped like Vector's, checked in three steps.
//!
//! 1. **Text**: `${VAR}` / `${VAR:-default}` interpolation ([`vars`]); a value is written
//!    as data where its reference stands (escaped in strings, a scalar outside them), so it
//!    cannot add or change tables and keys.
//! 2. **Components**: the TOML is parsed with spans kept (`toml_edit`); each component's table
//!    is deserialized into its closed config type with `deny_unknown_fields`, and every error
//!    is kept with the component id and `file:line:column` ([`loader`]).
//! 3. **Graph**: inputs resolve to outputs that exist, no cycles, every sink and transform has
//!    inputs ([`graph`]); then each component checks what it can without I/O (regexes, VRL
//!    programs, templates).
//!
//! Invariant: validation is pure. Nothing here opens a file other than the pipeline files
//! themselves, binds a socket or spawns a task; that is `build`'s job in the topology.

pub mod graph;
pub mod loader;
pub mod unit_test;
pub mod vars;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::channel::{DEFAULT_BUFFER_BYTES, WhenFull};
pub use crate::error::{ConfigIssue, did_you_mean};
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

pub use loader::{load_from_paths, load_from_str};

/// The text of the embedded default pipeline (`pipelines/default.toml`).
pub const DEFAULT_PIPELINE: &str = include_str!("../../pipelines/default.toml");

/// A place in a pipeline file, 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One configuration error, in words a user understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Option<Location>,
    /// `sources.id`, `transforms.id` or `sinks.id`.
    pub component: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(c) = &self.component {
            write!(f, "{c}: ")?;
        }
        // A message may quote a value of the file, such as an endpoint with its password.
        f.write_str(&crate::redact::credentials(&self.message))
    }
}

impl std::error::Error for ConfigError {}

/// The kind of a component, as written in the TOML tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    Source,
    Transform,
    Sink,
}

impl ComponentKind {
    pub fn table(self) -> &'static str {
        match self {
            Self::Source => "sources",
            Self::Transform => "transforms",
            Self::Sink => "sinks",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Sink => "sink",
        }
    }
}

/// A component as configured: its typed config plus the keys every component of its kind has.
#[derive(Debug, Clone)]
pub struct ComponentDef<T> {
    pub inner: T,
    /// Upstream outputs (`id` or `id.output`); empty for sources.
    pub inputs: Vec<String>,
    /// The input buffer (sinks only; transforms use the default).
    pub buffer: BufferConfig,
    /// Where the component's table starts.
    pub location: Location,
    /// Where each of its keys is, for errors found after parsing.
    pub field_locations: BTreeMap<String, Location>,
    /// Its table in a canonical form: equal when the component's configuration is the same
    /// (a reload keeps it running).
    pub fingerprint: String,
}

impl<T> ComponentDef<T> {
    pub fn locate(&self, field: Option<&str>) -> Location {
        field
            .and_then(|f| {
                self.field_locations.get(f).or_else(|| {
                    // `multiline.start_pattern` falls back to `multiline`.
                    f.split('.').next().and_then(|head| self.field_locations.get(head))
                })
            })
            .cloned()
            .unwrap_or_else(|| self.location.clone())
    }
}

/// `buffer` of a sink: the bounded queue in front of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (the default) or `disk` (see [`crate::buffers::disk`]).
    #[serde(default, rename = "type")]
    pub kind: BufferType,
    /// Memory: most bytes of events queued (estimated in-memory size; default 512 KiB).
    /// Disk: most bytes of segment files (default 256 MiB, at least 1 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// `block` (backpressure, the default) or `drop_newest`.
    #[serde(default)]
    pub when_full: WhenFull,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    #[default]
    Memory,
    Disk,
}

impl BufferConfig {
    /// `max_bytes`, or the default of the buffer's type.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes.unwrap_or(match self.kind {
            BufferType::Memory => DEFAULT_BUFFER_BYTES,
            BufferType::Disk => crate::buffers::disk::DEFAULT_MAX_BYTES,
        })
    }

    pub fn check(&self) -> Vec<ConfigIssue> {
        let min = crate::buffers::disk::MIN_MAX_BYTES;
        if self.kind == BufferType::Disk && self.max_bytes() < min {
            return vec![ConfigIssue::field(
                "buffer.max_bytes",
                format!("buffer.max_bytes of a disk buffer must be at least {min} (1 MiB)"),
            )];
        }
        Vec::new()
    }
}

/// `[api]`: the HTTP endpoint for `/metrics` and `/health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API. Default true when the `[api]` table is present; without the table there
    /// is no API.
    #[serde(default = "default_api_enabled")]
    pub enabled: bool,
    /// Address and port to listen on. Default `127.0.0.1:9598` (loopback only); use
    /// `0.0.0.0:9598` for Prometheus on another host.
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
    /// Most connections served at once; further ones are closed at once. Default 256.
    #[serde(default = "default_api_max_connections")]
    pub max_connections: std::num::NonZeroUsize,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may wait for its next request. Default 10.
    #[serde(default = "default_api_header_read_timeout_secs")]
    pub header_read_timeout_secs: std::num::NonZeroU64,
    /// Whether `POST /reload` reloads the pipeline files (as SIGHUP does). Default false.
    #[serde(default)]
    pub reload: bool,
    /// Whether `GET /tap` (what `weir tap` reads) streams copies of events. Default false:
    /// it shows the events' contents to whoever reaches the API.
    #[serde(default)]
    pub tap: bool,
}

fn default_api_max_connections() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(256).unwrap_or(std::num::NonZeroUsize::MIN)
}

fn default_api_header_read_timeout_secs() -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(10).unwrap_or(std::num::NonZeroU64::MIN)
}

fn default_api_enabled() -> bool {
    true
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9598))
}

/// Top-level options other than the component tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GlobalOptions {
    /// Where checkpoints and disk buffers are kept. Default `/var/lib/weir`.
    pub data_dir: Option<PathBuf>,
    /// Read separately (its errors are reported as `api: ...`).
    #[serde(skip)]
    pub api: Option<ApiConfig>,
    /// Read separately (its errors are reported as `dead_letter: ...`).
    #[serde(skip)]
    pub dead_letter: Option<crate::dead_letter::DeadLetterConfig>,
    /// How long a graceful shutdown may take before the rest is abandoned (default 30).
    pub shutdown_timeout_secs: Option<u64>,
}

/// A whole, validated pipeline.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api: Option<ApiConfig>,
    /// `[dead_letter]`: where events rejected for good go.
    pub dead_letter: crate::dead_letter::DeadLetterConfig,
    pub shutdown_timeout: Duration,
    pub sources: BTreeMap<String, ComponentDef<SourceConfig>>,
    pub transforms: BTreeMap<String, ComponentDef<TransformConfig>>,
    pub sinks: BTreeMap<String, ComponentDef<SinkConfig>>,
    /// Non-fatal findings (unused outputs), printed by `validate` and logged by `run`.
    pub warnings: Vec<String>,
    /// `[[tests]]`, for `weir test`; `run` ignores them.
    pub tests: Vec<unit_test::TestDef>,
    /// What is malformed in `[[tests]]`: errors for `validate` and `test`, not for `run`.
    pub test_errors: Vec<ConfigError>,
}

pub const DEFAULT_DATA_DIR: &str = "/var/lib/weir";
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
