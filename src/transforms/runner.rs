//! The task every transform runs in: read a batch from its input, transform it, send each
//! output on. It counts what the transform received and sent, so a transform never does.
//!
//! A transform that keeps no state between batches ([`TransformComponent::concurrent`]) is
//! built once per worker ([`workers`]), and its batches are transformed on their own tasks,
//! as many at once as there are instances, so that one stage can use every core. The outputs
//! are still sent in the order the batches came, so order and backpressure are as with one
//! instance; the batches being transformed or waiting their turn are the only extra memory
//! (at most two per instance).
//!
//! [`TransformComponent::concurrent`]: crate::component::TransformComponent::concurrent

use std::collections::VecDeque;

use tokio::task::JoinHandle;

use crate::channel::{Batch, BatchReceiver, Copies, Fanout};
use crate::component::{Transform, TransformOutput, workers};
use crate::error::ComponentError;
use crate::event::batch_size;
use crate::metrics::{ComponentMetrics, OutputMetrics, discard_reason};

/// How many instances of a transform to build: one per worker ([`workers`]) for a
/// concurrent transform, else one.
pub fn instances(concurrent: bool) -> usize {
    if concurrent { workers() } else { 1 }
}

/// The task of a transform: read a batch, transform it, send each output on. With more than
/// one instance, batches are transformed in parallel and sent on in order.
pub async fn run(
    instances: Vec<Box<dyn Transform>>,
    mut input: BatchReceiver,
    primary: Fanout,
    named: Vec<(String, Fanout, OutputMetrics)>,
    metrics: ComponentMetrics,
) -> Result<(), ComponentError> {
    let mut outputs = Outputs::new(primary, named, &metrics);
    let instances_count = instances.len();
    let mut idle: Vec<Worker> = (instances.into_iter())
        .map(|transform| Worker {
            transform,
            out: TransformOutput::new(outputs.named.len()),
            fanouts: outputs.fanouts(),
            metrics: metrics.clone(),
        })
        .collect();
    if instances_count == 1
        && let Some(mut worker) = idle.pop()
    {
        while let Some(batch) = input.recv_batch().await {
            let prepared = worker.work(batch);
            outputs.send(prepared).await;
        }
        return Ok(());
    }
    // An instance comes back as soon as it is done, so that it takes the next batch while an
    // older one is still being transformed; the results wait in `running`, oldest first, and
    // go on in that order. At most twice as many batches as instances are held.
    let (free, mut freed) = tokio::sync::mpsc::unbounded_channel::<Worker>();
    let mut running: VecDeque<JoinHandle<Vec<Option<Prepared>>>> = VecDeque::new();
    let mut open = true;
    loop {
        tokio::select! {
            // Finished work goes on first.
            biased;
            done = async { running.front_mut().expect("not empty").await },
                if !running.is_empty() =>
            {
                running.pop_front();
                match done {
                    Ok(prepared) => outputs.send(prepared).await,
                    // Panics as the single instance would, in the component's own task.
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            Some(worker) = freed.recv(), if idle.len() < instances_count => idle.push(worker),
            batch = input.recv_batch(),
                if open && !idle.is_empty() && running.len() < 2 * instances_count =>
            {
                match batch {
                    Some(batch) => {
                        let mut worker = idle.pop().expect("an idle instance");
                        let free = free.clone();
                        running.push_back(tokio::spawn(async move {
                            let prepared = worker.work(batch);
                            // The receiver lives as long as the runner, which awaits this task.
                            let _ = free.send(worker);
                            prepared
                        }));
                    }
                    None => open = false,
                }
            }
            else => break,
        }
    }
    Ok(())
}

/// An instance, the output buffers it fills and what it needs to make its outputs ready to
/// send: everything per event happens here, on the instance's own task when there are several.
struct Worker {
    transform: Box<dyn Transform>,
    out: TransformOutput,
    /// Primary first, then the named outputs.
    fanouts: Vec<Fanout>,
    metrics: ComponentMetrics,
}

/// One output's events, copied for its consumers, and what is counted as sent.
struct Prepared {
    copies: Copies,
    events: usize,
    bytes: usize,
}

impl Worker {
    /// Turns the batch into events (a block of lines is built here), transforms them and
    /// copies each output for its consumers: one entry per output, `None` for an empty one.
    fn work(&mut self, batch: Batch) -> Vec<Option<Prepared>> {
        let events = batch.into_events();
        self.metrics.received(events.len(), batch_size(&events));
        self.transform.transform(events, &mut self.out);
        let buffers = std::iter::once(&mut self.out.primary).chain(self.out.named.iter_mut());
        (buffers.zip(&self.fanouts))
            .map(|(buffer, fanout)| {
                let events = std::mem::take(buffer);
                (!events.is_empty()).then(|| Prepared {
                    events: events.len(),
                    bytes: batch_size(&events),
                    copies: fanout.copies(events),
                })
            })
            .collect()
    }
}

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

    /// The fan-outs, primary first (clones share their consumers).
    fn fanouts(&self) -> Vec<Fanout> {
        std::iter::once(self.primary.0.clone())
            .chain(self.named.iter().map(|(_, f, _)| f.clone()))
            .collect()
    }

    /// Sends each output's prepared events on, in output order.
    async fn send(&mut self, prepared: Vec<Option<Prepared>>) {
        let (primary, primary_metrics) = &mut self.primary;
        let outputs = std::iter::once((primary, &*primary_metrics))
            .chain(self.named.iter_mut().map(|(_, f, m)| (f, &*m)));
        for ((fanout, m), p) in outputs.zip(prepared) {
            let Some(p) = p else { continue };
            m.sent(p.events, p.bytes);
            if let Err(events) = fanout.send_copies(p.copies).await {
                // No component reads this output.
                fanout.tap_unsent(&events);
                self.unconsumed.inc_by(events.len() as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::channel::{WhenFull, channel};
    use crate::event::{Event, Value};

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

    /// Runs `instances` over batches of one event each, numbered from 0, and returns the
    /// numbers in the order they were sent on.
    async fn run_numbered(instances: Vec<Box<dyn Transform>>, batches: i64) -> Vec<i64> {
        let (tx, input) = channel(1 << 20, WhenFull::Block, None, None);
        let (out_tx, mut out) = channel(1 << 20, WhenFull::Block, None, None);
        let primary = Fanout::new(vec![("out".into(), out_tx)]);
        let metrics = crate::transforms::test_util::metrics();
        let task = tokio::spawn(run(instances, input, primary, Vec::new(), metrics));
        for n in 0..batches {
            tx.send(vec![event(n)]).await.unwrap_or_else(|_| panic!("input closed"));
        }
        drop(tx);
        task.await.unwrap().unwrap();
        let mut sent = Vec::new();
        while let Some(batch) = out.try_recv() {
            sent.extend(batch.iter().map(number));
        }
        sent
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_transformed_at_once_and_sent_on_in_order() {
        let finished = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let instances: Vec<Box<dyn Transform>> = (0..2)
            .map(|_| Box::new(Gated { finished: Arc::clone(&finished) }) as Box<dyn Transform>)
            .collect();
        assert_eq!(run_numbered(instances, 4).await, [0, 1, 2, 3], "outputs in input order");
        let finished = finished.0.lock().unwrap().clone();
        // Batch 0's instance waited for batch 1; the other instance may have gone on to batch
        // 2 meanwhile, so only the order of 1 and 0 is certain.
        let at = |n: i64| finished.iter().position(|&m| m == n).expect("every batch transformed");
        assert!(at(1) < at(0), "batch 1 finished before batch 0: {finished:?}");
        assert_eq!(finished.len(), 4);
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
        let instances: Vec<Box<dyn Transform>> = vec![Box::new(Count(Arc::clone(&seen)))];
        assert_eq!(run_numbered(instances, 3).await, [0, 1, 2]);
        assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    }
}
