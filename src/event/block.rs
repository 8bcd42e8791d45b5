//! A block of lines: the complete lines of one read, kept as the bytes they were read in.
//!
//! Raw shipping (a file source feeding a file sink that writes each line's `message` as it
//! is) needs no event per line: building one per line, batching them, then encoding each
//! back into a buffer would be most of its work, with atomic reference-count traffic per
//! line between the reading thread and the sink. No crate models this; it is a handful of
//! lines.
//!
//! A block reaches only consumers that declared they write lines as read
//! (`channel::BatchSender::with_lines`); anything else that receives one turns it
//! into exactly the events the source would have built ([`LineBlock::into_events`]), so a
//! block is never seen as anything but those events.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::finalization::{BatchNotifier, EventFinalizers, EventStatus};
use super::{Event, SharedFields};

/// Lines read together, with what each of their events would carry.
#[derive(Clone, Debug)]
pub struct LineBlock {
    /// Every line followed by its `\n`; no line is empty or ends in `\r`.
    data: Bytes,
    count: usize,
    time: DateTime<Utc>,
    fields: Arc<SharedFields>,
    finalizers: EventFinalizers,
}

impl LineBlock {
    /// A block of `count` lines. `data` must be `count` non-empty lines, each followed by a
    /// newline and none ending in `\r` (`LineFramer::take_block` checks this); the events
    /// are line events of time `time` referencing `fields`, acknowledged through `notifier`.
    pub fn new(
        data: Bytes,
        count: usize,
        time: DateTime<Utc>,
        fields: Arc<SharedFields>,
        notifier: &BatchNotifier,
    ) -> Self {
        debug_assert_eq!(memchr::memchr_iter(b'\n', &data).count(), count);
        debug_assert!(data.last() == Some(&b'\n'));
        let mut finalizers = EventFinalizers::default();
        finalizers.add(notifier);
        Self { data, count, time, fields, finalizers }
    }

    /// How many lines (events) the block holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The lines, each followed by its newline: what a sink writing bare messages writes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Bytes held: the block's data, which is all of its memory but a few words.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn update_status(&self, status: EventStatus) {
        self.finalizers.update_status(status);
    }

    /// The acknowledgement handles of the block's events, for a sink that has taken its data.
    pub fn into_finalizers(self) -> EventFinalizers {
        self.finalizers
    }

    /// The events the source would have sent: one line event per line.
    pub fn into_events(self) -> Vec<Event> {
        let mut events = Vec::with_capacity(self.count);
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &self.data) {
            let mut e =
                Event::line(self.data.slice(start..nl), self.time).with_shared(&self.fields);
            *e.finalizers_mut() = self.finalizers.clone();
            events.push(e);
            start = nl + 1;
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchStatus;

    fn fields() -> Arc<SharedFields> {
        crate::sources::util::line_fields(&Bytes::from_static(b"h"), Some("/var/log/app.log"))
    }

    #[test]
    fn a_block_becomes_the_events_of_its_lines() {
        let fields = fields();
        let time = Utc::now();
        let (n, _ack) = BatchNotifier::with_receiver();
        let block =
            LineBlock::new(Bytes::from_static(b"one\ntwo x\n"), 2, time, Arc::clone(&fields), &n);
        assert_eq!((block.len(), block.size()), (2, 10));
        let events = block.into_events();
        let expected: Vec<Event> = ["one", "two x"]
            .iter()
            .map(|m| Event::line(Bytes::from(*m), time).with_shared(&fields))
            .collect();
        assert_eq!(events.len(), 2);
        for (e, x) in events.iter().zip(&expected) {
            assert_eq!(
                serde_json::to_value(e.view()).unwrap(),
                serde_json::to_value(x.view()).unwrap()
            );
            assert_eq!(e.size(), x.size());
        }
    }

    #[tokio::test]
    async fn its_events_acknowledge_the_block() {
        let (n, ack) = BatchNotifier::with_receiver();
        let block = LineBlock::new(Bytes::from_static(b"a\nb\n"), 2, Utc::now(), fields(), &n);
        drop(n);
        let events = block.into_events();
        events[0].update_status(EventStatus::Rejected);
        drop(events);
        assert_eq!(ack.await.unwrap(), BatchStatus::Rejected);
    }
}
