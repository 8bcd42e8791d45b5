//! The commands' output on standard output and standard error. `println!` and `eprintln!`
//! panic when the stream is closed (`weir validate | head` once `head` has exited,
//! `weir completions bash | true`, `weir run 2>&1 | head`); a command whose output was read
//! only in part has not failed, so these write and ignore the error, as `head`, `grep -q`
//! and `less` expect. Every command prints through them.

use std::io::Write as _;

/// Writes `bytes` to standard output; false when it is closed.
pub fn print(bytes: impl AsRef<[u8]>) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes.as_ref()).and_then(|()| out.flush()).is_ok()
}

/// `println!` that does not panic on a closed standard output.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = $crate::output::print(format!("{}\n", format_args!($($arg)*)));
    }};
}

/// Writes `bytes` to standard error; false when it is closed.
pub fn print_err(bytes: impl AsRef<[u8]>) -> bool {
    let mut err = std::io::stderr().lock();
    err.write_all(bytes.as_ref()).and_then(|()| err.flush()).is_ok()
}

/// `eprintln!` that does not panic on a closed standard error.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {{
        let _ = $crate::output::print_err(format!("{}\n", format_args!($($arg)*)));
    }};
}
