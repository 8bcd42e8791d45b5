//! `demo`: generates the logs of a small fleet of model servers, so that weir can be seen
//! working with nothing else installed (`cargo run --release` runs it).
//!
//! The lines imitate the shapes model servers really write: TorchServe access and metrics
//! lines, JSON prediction logs with feature values, and Python `logging` lines, including
//! errors followed by a multi-line traceback. Each line is one event, as a file source would
//! give it, so a `multiline` setting joins tracebacks exactly as it would for a real file.
//!
//! The JSON prediction logs are those of the `churn-xgb` model, with its three input features
//! (`tenure_months`, `monthly_charges`, `contract`). With `drift_after_secs` set, their
//! distribution changes that long after start (charges rise by 40, tenure halves, most
//! contracts become month-to-month), so that the `drift` transform has something to find.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::util::multiline::{Group, Multiline, MultilineConfig};
use super::util::{host_name, line_event, line_fields, sleep_until};
use crate::component::{SourceComponent, SourceContext};
use crate::error::{BuildError, ConfigIssue, Task};

/// `[sources.<id>] type = "demo"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Pause between lines. Default 200 ms; 0 generates as fast as the pipeline takes them.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Stop after this many lines (0, the default, never stops).
    #[serde(default)]
    pub count: u64,
    /// Seed of the generator, for repeatable output.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Join the lines of one message (a traceback, a stack trace) into one event; none by
    /// default (each line is an event).
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Shift the distribution of the prediction logs' features this many seconds after start.
    #[serde(default)]
    pub drift_after_secs: Option<u64>,
}

fn default_interval_ms() -> u64 {
    200
}

const MODELS: &[(&str, &str)] =
    &[("resnet-18", "1.0"), ("churn-xgb", "3"), ("bert-sentiment", "2.1")];
const CONTRACTS: &[&str] = &["month-to-month", "one-year", "two-year"];
const BATCH_LINES: usize = 512;

impl SourceComponent for DemoConfig {
    /// The compiled `multiline` options, if set.
    type Checked = Option<Multiline>;

    fn check(&self) -> Result<Option<Multiline>, Vec<ConfigIssue>> {
        self.multiline.as_ref().map(MultilineConfig::check).transpose()
    }

    fn build(
        &self,
        multiline: Option<Multiline>,
        mut cx: SourceContext,
    ) -> Result<Task, BuildError> {
        let mut agg = multiline.map(|m| m.aggregator::<()>(1 << 20));
        let interval = Duration::from_millis(self.interval_ms);
        let count = self.count;
        let drift_after = self.drift_after_secs.map(Duration::from_secs);
        let mut rng = match self.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Ok(Box::pin(async move {
            let host = line_fields(&host_name(), None);
            let started = Instant::now();
            let mut generator = Generator::default();
            let mut produced = 0u64;
            let mut queue: Vec<String> = Vec::new();
            let mut groups: Vec<Group<()>> = Vec::new();
            let mut next = tokio::time::Instant::now();
            loop {
                let done = count > 0 && produced >= count && queue.is_empty();
                if !done {
                    if interval.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        let deadline = agg.as_ref().and_then(|a| a.deadline());
                        tokio::select! {
                            biased;
                            _ = cx.shutdown.cancelled() => {}
                            _ = tokio::time::sleep_until(next) => {}
                            _ = sleep_until(deadline) => {}
                        }
                    }
                }
                let stop = cx.shutdown.is_cancelled() || done;
                let instant = Instant::now();
                let mut lines = Vec::new();
                if !stop && tokio::time::Instant::now() >= next {
                    let n = if interval.is_zero() { BATCH_LINES } else { 1 };
                    for _ in 0..n {
                        if queue.is_empty() {
                            if count > 0 && produced >= count {
                                break;
                            }
                            generator.drifted = drift_after.is_some_and(|d| started.elapsed() >= d);
                            generator.record(&mut rng, &mut queue);
                            produced += 1;
                        }
                        lines.push(queue.remove(0));
                    }
                    next += interval;
                }
                for line in lines {
                    cx.metrics.received(0, line.len());
                    let bytes = bytes::Bytes::from(line);
                    match agg.as_mut() {
                        Some(a) => a.push(bytes, (), instant, &mut groups),
                        None => groups.push(Group::line(bytes, (), false)),
                    }
                }
                if let Some(a) = agg.as_mut() {
                    if stop { a.flush(&mut groups) } else { a.flush_expired(instant, &mut groups) }
                }
                let now = Utc::now();
                let events: Vec<_> =
                    groups.drain(..).map(|g| line_event(g.bytes, now, &host)).collect();
                cx.metrics.received(events.len(), 0);
                if !cx.out.send(events).await || stop {
                    break;
                }
            }
            Ok(())
        }))
    }
}

/// Produces one "record": usually one line, several for an error with a traceback.
#[derive(Default)]
struct Generator {
    request: u64,
    /// The prediction logs' features come from the shifted distribution.
    drifted: bool,
}

impl Generator {
    fn record(&mut self, rng: &mut StdRng, out: &mut Vec<String>) {
        self.request += 1;
        let now = Utc::now();
        let python_ts = now.format("%Y-%m-%d %H:%M:%S,%3f").to_string();
        let (model, version) = MODELS[rng.random_range(0..MODELS.len())];
        let roll: f64 = rng.random();
        if roll < 0.45 {
            // TorchServe access log (latency in ms).
            let status = if rng.random::<f64>() < 0.03 { 503 } else { 200 };
            let latency = rng.random_range(8..60) + if status == 200 { 0 } else { 900 };
            out.push(format!(
                "{python_ts} [INFO ] W-9000-{model}_{version} ACCESS_LOG - /10.0.{}.{}:{} \"POST /predictions/{model} HTTP/1.1\" {status} {latency}",
                rng.random_range(0..4),
                rng.random_range(2..250),
                rng.random_range(32768..61000)
            ));
        } else if roll < 0.90 {
            // JSON prediction log of the churn model, with its feature values.
            let (model, version) = ("churn-xgb", "3");
            let (tenure, charges, contract) = if self.drifted {
                let contract = if rng.random::<f64>() < 0.8 {
                    CONTRACTS[0]
                } else {
                    CONTRACTS[rng.random_range(1..CONTRACTS.len())]
                };
                (rng.random_range(0.0..36.0), rng.random_range(58.0..160.0), contract)
            } else {
                (
                    rng.random_range(0.0..72.0),
                    rng.random_range(18.0..120.0),
                    CONTRACTS[rng.random_range(0..CONTRACTS.len())],
                )
            };
            let score: f64 = rng.random();
            out.push(format!(
                "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"logger\":\"model_server.predict\",\"model\":\"{model}\",\"model_version\":\"{version}\",\"request_id\":\"{:016x}\",\"latency_ms\":{:.2},\"features\":{{\"tenure_months\":{tenure:.1},\"monthly_charges\":{charges:.2},\"contract\":\"{contract}\"}},\"prediction\":\"{}\",\"score\":{score:.4}}}",
                now.to_rfc3339_opts(SecondsFormat::Millis, true),
                rng.random::<u64>(),
                rng.random_range(3.0..80.0),
                if score > 0.5 { "churn" } else { "stay" },
            ));
        } else if roll < 0.96 {
            // TorchServe metrics line.
            out.push(format!(
                "{python_ts} [INFO ] W-9000-{model}_{version}-stdout MODEL_METRICS - PredictionTime.Milliseconds:{:.2}|#ModelName:{model},Level:Model|#hostname:demo-host,requestID:{:08x}-0000-4000-8000-{:012x},timestamp:{}",
                rng.random_range(5.0..50.0),
                rng.random::<u32>(),
                self.request,
                now.timestamp()
            ));
        } else {
            // A failed prediction, logged by Python with its traceback.
            out.push(format!(
                "{python_ts} [ERROR] model_server.handler: prediction failed for request {}",
                self.request
            ));
            out.push("Traceback (most recent call last):".into());
            out.push("  File \"/app/handler.py\", line 42, in handle".into());
            out.push("    output = self.model.predict(batch)".into());
            out.push(format!("  File \"/app/models/{model}.py\", line 17, in predict"));
            out.push(
                "    raise ValueError(f\"feature 'monthly_charges' out of range: {x}\")".into(),
            );
            out.push(format!(
                "ValueError: feature 'monthly_charges' out of range: {:.1}",
                rng.random_range(-50.0..-1.0)
            ));
        }
    }
}
