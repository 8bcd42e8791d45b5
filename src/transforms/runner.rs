//! The task every transform runs in: read a batch from its input, transform it, send each
//! output on. It counts what the transform received and sent, so a transform never does.
//!
//! A transform that keeps no state between batches ([`TransformComponent::concurrent`]) is
//! built once per worker ([`workers`]), and its batches are transformed on their own tasks,
//! as many at once as there are instances, so that one stage can use every core. The outputs
//! are still sent in the order the batches came, so order and backpressure are as with one
//! instance; the batches being transformed are the only extra memory (one per instance).
//!
//! [`TransformComponent::concurrent`]: crate::component::TransformComponent::concurrent

use std::collections::VecDeque;

use tokio::task::JoinHandle;

use crate::channel::{BatchReceiver, Fanout};
use crate::component::{Transform, TransformOutput, workers};
use crate::error::ComponentError;
use crate::event::{Event, batch_size};
use crate::metrics::{ComponentMetrics, OutputMetrics, discard_reason};

/// How many instances of a transform to build: one per worker ([`workers`]) for a
/// concurrent transform, else one.
pub fn instances(concurrent: bool) -> usize {
    if concurrent { workers() } else { 1 }
}

/// The task of a transform: read a batch, transform it, send each output on. With more than
/// one instance, batches are transformed in parallel and sent on in order.
pub async fn run(
    mut instances: Vec<Box<dyn Transform>>,
    mut input: BatchReceiver,
    primary: Fanout,
    named: Vec<(String, Fanout, OutputMetrics)>,
    metrics: ComponentMetrics,
) -> Result<(), ComponentError> {
    let mut outputs = Outputs::new(primary, named, &metrics);
    if instances.len() == 1
        && let Some(mut transform) = instances.pop()
    {
        let mut out = outputs.buffers();
        while let Some(batch) = input.recv().await {
            metrics.received(batch.len(), batch_size(&batch));
            transform.transform(batch, &mut out);
            outputs.send(&mut out).await;
        }
        return Ok(());
    }
    let mut idle: Vec<Worker> = instances.into_iter().map(|t| (t, outputs.buffers())).collect();
    // The batches being transformed, oldest first: their outputs go on in this order.
    let mut running: VecDeque<JoinHandle<Worker>> = VecDeque::new();
    let mut open = true;
    loop {
        tokio::select! {
            // Finished work goes on first, which frees an instance for the next batch.
            biased;
            done = async { running.front_mut().expect("not empty").await },
                if !running.is_empty() =>
            {
                running.pop_front();
                let (transform, mut out) = match done {
                    Ok(worker) => worker,
                    // Panics as the single instance would, in the component's own task.
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                outputs.send(&mut out).await;
                idle.push((transform, out));
            }
            batch = input.recv(), if open && !idle.is_empty() => match batch {
                Some(batch) => {
                    metrics.received(batch.len(), batch_size(&batch));
                    let (mut transform, mut out) = idle.pop().expect("an idle instance");
                    running.push_back(tokio::spawn(async move {
                        transform.transform(batch, &mut out);
                        (transform, out)
                    }));
                }
                None => open = false,
            },
            else => break,
        }
    }
    Ok(())
}

/// An instance and the output buffers it fills.
type Worker = (Box<dyn Transform>, TransformOutput);

/// A transform's outputs: where each goes and what is counted on the way.
struct Outputs {
    primary: (Fanout, OutputMetrics),
    named: Vec<(String, Fanout, OutputMetrics)>,
    unconsumed: prometheus_client::metrics::counter::Counter,
}

impl Outputs {
    fn new(
        primary: Fanout,
        named: Vec<(String, Fanout, OutputMetrics)>,
        metrics: &ComponentMetrics,
    ) -> Self {
        Self {
            primary: (primary, metrics.output("_default")),
            named,
            unconsumed: metrics.discarded_counter(discard_reason::OUTPUT_NOT_CONSUMED),
        }
    }

    /// Empty buffers for one instance's results.
    fn buffers(&self) -> TransformOutput {
        TransformOutput::new(self.named.len())
    }

    /// Sends what `out` holds on, output by output, and leaves it empty.
    async fn send(&mut self, out: &mut TransformOutput) {
        let (fanout, m) = &mut self.primary;
        send_one(fanout, m, &self.unconsumed, std::mem::take(&mut out.primary)).await;
        for (i, (_, fanout, m)) in self.named.iter_mut().enumerate() {
            send_one(fanout, m, &self.unconsumed, std::mem::take(&mut out.named[i])).await;
        }
    }
}

async fn send_one(
    fanout: &mut Fanout,
    m: &OutputMetrics,
    unconsumed: &prometheus_client::metrics::counter::Counter,
    events: Vec<Event>,
) {
    if events.is_empty() {
        return;
    }
    m.sent(events.len(), batch_size(&events));
    if fanout.is_empty() {
        fanout.tap_unsent(&events);
        unconsumed.inc_by(events.len() as u64);
    } else {
        fanout.send(events).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::channel::{WhenFull, channel};
    use crate::event::Value;

    /// Records the order in which batches were transformed; the instance given batch 0 waits
    /// until batch 1 has been transformed, so the two finish in the reverse of their order.
    struct Gated {
        finished: Arc<(Mutex<Vec<i64>>, Condvar)>,
    }

    fn number(event: &Event) -> i64 {
        match event.get(&crate::event::parse_path("n").unwrap()) {
            Some(Value::Integer(n)) => *n,
            other => panic!("no number: {other:?}"),
        }
    }

    impl Transform for Gated {
        fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
            let n = number(&events[0]);
            let (lock, changed) = &*self.finished;
            let mut finished = lock.lock().unwrap();
            if n == 0 {
                // Bounded so that a runner that does not run batches at once fails the test
                // instead of hanging it.
                let (guard, timeout) = changed
                    .wait_timeout_while(finished, Duration::from_secs(60), |f| !f.contains(&1))
                    .unwrap();
                assert!(!timeout.timed_out(), "batch 1 was not transformed while batch 0 was");
                finished = guard;
            }
            finished.push(n);
            changed.notify_all();
            out.primary.extend(events);
        }
    }

    fn event(n: i64) -> Event {
        Event::from_value(Value::from(&serde_json::json!({ "n": n })))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_transformed_at_once_and_sent_on_in_order() {
        let finished = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let instances: Vec<Box<dyn Transform>> = (0..2)
            .map(|_| Box::new(Gated { finished: Arc::clone(&finished) }) as Box<dyn Transform>)
            .collect();
        let (tx, input) = channel(1 << 20, WhenFull::Block, None, None);
        let (out_tx, mut out) = channel(1 << 20, WhenFull::Block, None, None);
        let primary = Fanout::new(vec![("out".into(), out_tx)]);
        let metrics = crate::transforms::test_util::metrics();
        let task = tokio::spawn(run(instances, input, primary, Vec::new(), metrics));
        for n in 0..4 {
            tx.send(vec![event(n)]).await.unwrap_or_else(|_| panic!("input closed"));
        }
        drop(tx);
        task.await.unwrap().unwrap();
        let mut sent = Vec::new();
        while let Some(batch) = out.try_recv() {
            sent.extend(batch.iter().map(number));
        }
        assert_eq!(sent, [0, 1, 2, 3], "outputs in input order");
        let finished = finished.0.lock().unwrap().clone();
        assert_eq!(finished[..2], [1, 0], "batch 1 finished before batch 0: {finished:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_instance_transforms_batches_one_after_the_other() {
        struct Count(Arc<Mutex<Vec<i64>>>);
        impl Transform for Count {
            fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
                self.0.lock().unwrap().extend(events.iter().map(number));
                out.primary.extend(events);
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, input) = channel(1 << 20, WhenFull::Block, None, None);
        let (out_tx, mut out) = channel(1 << 20, WhenFull::Block, None, None);
        let primary = Fanout::new(vec![("out".into(), out_tx)]);
        let instances: Vec<Box<dyn Transform>> = vec![Box::new(Count(Arc::clone(&seen)))];
        let task = tokio::spawn(run(
            instances,
            input,
            primary,
            Vec::new(),
            crate::transforms::test_util::metrics(),
        ));
        for n in 0..3 {
            tx.send(vec![event(n)]).await.unwrap_or_else(|_| panic!("input closed"));
        }
        drop(tx);
        task.await.unwrap().unwrap();
        let mut sent = Vec::new();
        while let Some(batch) = out.try_recv() {
            sent.extend(batch.iter().map(number));
        }
        assert_eq!(sent, [0, 1, 2]);
        assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    }
}
