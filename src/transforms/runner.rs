//! The task every transform runs in: read a batch from its input, transform it, send each
//! output on. It counts what the transform received and sent, so a transform never does.

use crate::channel::{BatchReceiver, Fanout};
use crate::component::{Transform, TransformOutput};
use crate::error::ComponentError;
use crate::event::batch_size;
use crate::metrics::{ComponentMetrics, OutputMetrics};

/// The task of a synchronous transform: read a batch, transform it, send each output on.
pub async fn run(
    mut transform: Box<dyn Transform>,
    mut input: BatchReceiver,
    mut primary: Fanout,
    mut named: Vec<(String, Fanout, OutputMetrics)>,
    metrics: ComponentMetrics,
) -> Result<(), ComponentError> {
    let primary_metrics = metrics.output("_default");
    let mut out = TransformOutput::new(named.len());
    let unconsumed = metrics.discarded_counter(crate::metrics::discard_reason::OUTPUT_NOT_CONSUMED);
    while let Some(batch) = input.recv().await {
        metrics.received(batch.len(), batch_size(&batch));
        transform.transform(batch, &mut out);
        let events = std::mem::take(&mut out.primary);
        if !events.is_empty() {
            primary_metrics.sent(events.len(), batch_size(&events));
            if primary.is_empty() {
                primary.tap_unsent(&events);
                unconsumed.inc_by(events.len() as u64);
            } else {
                primary.send(events).await;
            }
        }
        for (i, (_, fanout, m)) in named.iter_mut().enumerate() {
            let events = std::mem::take(&mut out.named[i]);
            if events.is_empty() {
                continue;
            }
            m.sent(events.len(), batch_size(&events));
            if fanout.is_empty() {
                fanout.tap_unsent(&events);
                unconsumed.inc_by(events.len() as u64);
            } else {
                fanout.send(events).await;
            }
        }
    }
    Ok(())
}
