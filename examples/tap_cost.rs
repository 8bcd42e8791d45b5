//! What a tap costs the fan-out it is on, without criterion (a few seconds):
//!
//!     CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example tap_cost   # or --release
//!
//! Sends batches of 512 events through a `Fanout` into one channel that a task drains, three
//! ways, interleaved five times: no tap attached (the data path's only extra is the atomic
//! check), a tap attached whose reader never reads (its queue fills, then every sampled copy
//! is dropped), and the check alone in a loop. Prints the median per batch of each.

use std::time::{Duration, Instant};

use weir::channel::{self, Batch, Fanout, WhenFull};
use weir::config::graph::OutputId;
use weir::event::Event;
use weir::tap::{Hub, TapRequest};

const BATCH: usize = 512;
const BATCHES: usize = 20_000;

fn batch() -> Vec<Event> {
    (0..BATCH)
        .map(|i| Event::from_message(format!(r#"{{"model":"churn-xgb","latency_ms":{i}}}"#)))
        .collect()
}

/// Nanoseconds per batch sent through `fanout`.
async fn send_all(fanout: &mut Fanout, template: &[Event]) -> f64 {
    let start = Instant::now();
    for _ in 0..BATCHES {
        fanout.send_batch(Batch::Events(template.to_vec())).await;
    }
    start.elapsed().as_nanos() as f64 / BATCHES as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (tx, mut rx) = channel::channel(64 << 20, WhenFull::Block, None, None);
    tokio::spawn(async move { while rx.recv_batch().await.is_some() {} });
    let hub: &'static Hub = Box::leak(Box::default());
    let config = weir::config::load_from_str(
        "bench.toml",
        "[sources.x]\ntype = \"stdin\"\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"x\"]\n",
    )
    .unwrap();
    hub.set_graph(&config, &[]);
    let out = OutputId { component: "x".into(), port: None };
    let mut plain = Fanout::new(vec![("out".into(), tx.clone())]).tapped(hub.point(&out));
    let mut tapped = Fanout::new(vec![("out".into(), tx)]).tapped(hub.point(&out));
    let template = batch();
    let (mut off, mut on, mut check) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        off.push(send_all(&mut plain, &template).await);
        let request = TapRequest {
            outputs_of: vec!["x".into()],
            inputs_of: vec![],
            limit: 100,
            interval: Duration::from_millis(500),
        };
        let stream = hub.attach(request).unwrap();
        on.push(send_all(&mut tapped, &template).await);
        drop(stream);
        let point = hub.point(&out);
        let start = Instant::now();
        let mut seen = 0u64;
        for _ in 0..BATCHES * 100 {
            seen += u64::from(std::hint::black_box(&point).is_active());
        }
        std::hint::black_box(seen);
        check.push(start.elapsed().as_nanos() as f64 / (BATCHES * 100) as f64);
    }
    println!("batches of {BATCH} events, {BATCHES} batches per run, median of 5 runs");
    println!("no tap attached:        {:>10.0} ns per batch", median(off));
    println!("a tap attached:         {:>10.0} ns per batch", median(on));
    println!("the check alone:        {:>10.2} ns per batch", median(check));
}
