//! What a component is given when it is built: its id, its input or output, its metrics, the
//! shutdown signal (sources) and the dead-letter handle (sinks).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::channel::{self, BatchReceiver, Fanout};
use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::metrics::{ComponentMetrics, OutputMetrics};
use crate::sources::util::listeners::Listeners;

/// Tells a source to stop, and by when everything must be done.
#[derive(Clone)]
pub struct ShutdownSignal {
    token: CancellationToken,
    deadline: Arc<OnceLock<Instant>>,
}

impl ShutdownSignal {
    pub fn new() -> Self {
        Self { token: CancellationToken::new(), deadline: Arc::new(OnceLock::new()) }
    }

    /// Resolves when the source must stop reading.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// When the graceful shutdown gives up (known once shutdown has begun).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    pub(crate) fn trigger(&self, timeout: Duration) {
        let _ = self.deadline.set(Instant::now() + timeout);
        self.token.cancel();
    }
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self::new()
    }
}

/// The output of a source. Clones share the same consumers: a source that reads several
/// connections at once gives each its own clone, and each clone waits on its own when the
/// consumers are full.
#[derive(Clone)]
pub struct SourceSender {
    fanout: Fanout,
    metrics: OutputMetrics,
}

impl SourceSender {
    pub fn new(fanout: Fanout, metrics: OutputMetrics) -> Self {
        Self { fanout, metrics }
    }

    /// Sends a batch downstream, waiting while the consumers' buffers are full.
    /// Returns `false` when no consumer is left (the source should stop).
    pub async fn send(&mut self, events: Vec<Event>) -> bool {
        self.send_batch(channel::Batch::Events(events)).await
    }

    /// Do all consumers take blocks of lines as they are ([`crate::event::LineBlock`])?
    pub fn accepts_lines(&self) -> bool {
        self.fanout.accepts_lines()
    }

    /// Sends events or a block of lines downstream, as [`SourceSender::send`]. A block is
    /// for sources that checked [`SourceSender::accepts_lines`]; a consumer that does not
    /// take blocks would still get its events.
    pub async fn send_batch(&mut self, batch: channel::Batch) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.metrics.sent(batch.len(), batch.size());
        self.fanout.send_batch(batch).await
    }
}

/// What a source is given when it is built.
pub struct SourceContext {
    pub id: String,
    pub out: SourceSender,
    pub shutdown: ShutdownSignal,
    pub data_dir: PathBuf,
    pub metrics: ComponentMetrics,
    /// Listening sockets handed on between a source's instances during a reload.
    pub listeners: Listeners,
}

/// What a sink is given when it is built.
pub struct SinkContext {
    pub id: String,
    pub input: BatchReceiver,
    pub metrics: ComponentMetrics,
    pub data_dir: PathBuf,
    /// Where the events the sink rejects for good go (see [`crate::dead_letter`]).
    pub dead_letter: DeadLetter,
    /// Fires when weir begins to stop: a sink that retries outside the request driver stops
    /// retrying then, so that a dead destination does not hold the stop until its timeout.
    pub shutdown: ShutdownSignal,
}
