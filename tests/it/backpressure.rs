//! A sink that cannot write holds the whole pipeline back: the source stops reading, memory
//! stays bounded, and when the sink resumes every line arrives.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Weir, wait_for};

const LINES: usize = 1_000_000;
const BUFFER_BYTES: u64 = 4 * 1024 * 1024;

#[test]
fn a_stalled_sink_bounds_memory_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for i in 0..LINES {
            writeln!(
                f,
                "id={i:07} model=resnet-18 status=200 latency_ms={} {}",
                i % 97,
                "p".repeat(40)
            )
            .unwrap();
        }
    }
    let file_size = std::fs::metadata(&log).unwrap().len();

    // The console sink writes into a pipe nobody reads yet: its writes block.
    let weir = Weir::start_with(
        dir.path(),
        &format!(
            r#"
[sources.files]
type = "file"
include = ["{}"]

[sinks.out]
type = "console"
inputs = ["files"]
encoding.codec = "text"
buffer.max_bytes = {BUFFER_BYTES}
"#,
            log.display()
        ),
        Stdio::piped(),
    );
    let mut weir = weir;
    let stdout = weir.child.stdout.take().unwrap();

    // Wait until the sink's buffer is full: from then on the source cannot send.
    let full = wait_for(Duration::from_secs(60), || {
        weir.metric("weir_buffer_size_bytes", &[("component_id", "out")]) as u64
            >= BUFFER_BYTES * 3 / 4
    });
    assert!(full, "the sink's buffer never filled; stderr:\n{}", weir.stderr());
    let read_before =
        weir.metric("weir_component_received_bytes_total", &[("component_id", "files")]);
    let rss = weir.rss_bytes();
    assert!(
        read_before < file_size as f64 / 2.0,
        "the source read {read_before} of {file_size} bytes while the sink was stalled: no backpressure"
    );
    assert!(rss < 80 * 1024 * 1024, "resident memory {rss} bytes while stalled");
    // Stalled means stalled: the buffer does not grow past its bound.
    let in_buffer = weir.metric("weir_buffer_size_bytes", &[("component_id", "out")]) as u64;
    assert!(
        in_buffer <= BUFFER_BYTES,
        "buffer holds {in_buffer} bytes, more than its {BUFFER_BYTES}"
    );

    // The sink resumes: every line arrives, once, in order.
    let reader = std::thread::spawn(move || {
        let mut expected = 0usize;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let id: usize = line[3..10].parse().unwrap();
            assert_eq!(id, expected, "lines out of order or missing");
            expected += 1;
            if expected == LINES {
                break;
            }
        }
        expected
    });
    let received = reader.join().unwrap();
    assert_eq!(received, LINES);
    assert!(weir.stop().success());
}
