//! The machine's limit for the comparison benchmark (`benches/compare/`): reads a scenario's
//! input and splits it into messages with nothing else done, the least any shipper must do.
//!
//! ```sh
//! cargo run --release --example bench_split -- lines FILE
//! cargo run --release --example bench_split -- octets LISTEN_ADDR EXPECTED_MESSAGES
//! ```
//!
//! - `lines FILE`: reads the file in 256 KiB blocks and finds every line with `memchr` (the
//!   same crate and block size as weir's file source). Empty lines are not counted, as
//!   shippers skip them.
//! - `octets ADDR N`: listens on `ADDR`, prints `listening on ADDR`, accepts connections and
//!   splits their bytes into RFC 6587 octet-counted frames (`LEN SP MSG`), until `N` frames
//!   have arrived.
//!
//! Either way it prints one JSON line, `{"events":..,"bytes":..,"peak_rss":..}`, and exits; the
//! harness times it and reads its CPU time from the kernel.

use std::io::Read;

const BLOCK: usize = 256 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["lines", file] => lines(file),
        ["octets", addr, n] => match n.parse() {
            Ok(n) => octets(addr, n),
            Err(e) => Err(format!("EXPECTED_MESSAGES: {e}")),
        },
        _ => Err("usage: bench_split lines FILE | bench_split octets ADDR N".into()),
    };
    match result {
        Ok((events, bytes)) => println!(
            "{{\"events\":{events},\"bytes\":{bytes},\"peak_rss\":{}}}",
            peak_rss().map_or_else(|| "null".to_string(), |r| r.to_string())
        ),
        Err(e) => {
            eprintln!("bench_split: {e}");
            std::process::exit(1);
        }
    }
}

/// This process's peak resident memory in bytes (`VmHWM`), which the harness cannot read from
/// the kernel's accounting of a child it started (that includes the parent's pages).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// Counts the non-empty lines of a file; a last line without its newline counts too.
fn lines(path: &str) -> Result<(u64, u64), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut buf = vec![0u8; BLOCK];
    let (mut events, mut bytes) = (0u64, 0u64);
    // Length of the line carried over from the previous block (its bytes are not kept: the
    // limit measures finding lines, and a shipper that keeps them copies at most once).
    let mut carried = 0usize;
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buf[..n]) {
            if end > start || carried > 0 {
                events += 1;
            }
            carried = 0;
            start = end + 1;
        }
        carried += n - start;
    }
    if carried > 0 {
        events += 1;
    }
    Ok((events, bytes))
}

/// Receives octet-counted frames until `expected` have arrived.
fn octets(addr: &str, expected: u64) -> Result<(u64, u64), String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; BLOCK];
    while events < expected {
        let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        // Per connection: either reading the length digits or skipping a frame's body.
        let mut len: usize = 0;
        let mut skip: usize = 0;
        loop {
            let n = conn.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            let mut i = 0;
            while i < n {
                if skip > 0 {
                    let take = skip.min(n - i);
                    skip -= take;
                    i += take;
                    if skip == 0 {
                        events += 1;
                    }
                    continue;
                }
                match buf[i] {
                    d @ b'0'..=b'9' => {
                        len = len
                            .checked_mul(10)
                            .and_then(|l| l.checked_add(usize::from(d - b'0')))
                            .ok_or("frame length overflows")?;
                    }
                    b' ' if len > 0 => {
                        skip = len;
                        len = 0;
                    }
                    other => return Err(format!("not an octet-counted frame: byte {other:#x}")),
                }
                i += 1;
            }
        }
        if skip > 0 || len > 0 {
            return Err("connection closed inside a frame".into());
        }
    }
    Ok((events, bytes))
}
