//! The `weir` command line: parse arguments, set up logging, dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Events are many small allocations freed on another thread than the one that made them;
/// mimalloc handles that pattern with far less time and fragmentation than glibc's malloc
/// (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its position in mimalloc 3's `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with weir before mimalloc returns it to the system, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. mimalloc 3 waits 1,000 ms (its header still
/// documents 10, mimalloc 2's value). A pipeline frees as fast as it allocates, and on other
/// threads than the allocating ones, so a second of freed pages is much of its peak. In
/// benches/compare, 50 ms against 1,000: peak RSS 15 to 35% lower in scenario 2, 5 to 8% in
/// 3, 10 to 17% in 5, throughput the same but in scenario 5 (about 8% less); 10 ms saved
/// more (a third in scenarios 2 and 5) for 12 to 25% of throughput in 4 and 5, as freed
/// pages are faulted in again (BENCHMARKS.md, 2026-12-04 (late)).
const PURGE_DELAY_MS: std::ffi::c_long = 50;

/// Sets mimalloc's options. Runs first in `main`, while weir has one thread: mimalloc's
/// option setters are not thread safe.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain store into mimalloc's option table for a valid option; no other
        // thread exists yet to read it concurrently.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A log pipeline: sources -> parse, enrich, filter -> sinks"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Format of weir's own log.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines (the embedded default pipeline when no --config is given).
    Run {
        /// A pipeline file; repeat for several.
        #[arg(short, long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Check pipeline files and print every error, or "Configuration OK".
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Inspect disk buffers.
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
    /// Install what the pipeline's Elasticsearch sinks need (ILM policy, index template) and
    /// the Kibana data view and dashboard; idempotent.
    Setup {
        /// A pipeline file; repeat for several.
        #[arg(short, long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
        /// Kibana's URL (default: $KIBANA_ENDPOINT; Kibana is skipped when neither is set).
        #[arg(long, value_name = "URL")]
        kibana: Option<String>,
    },
    /// Build the reference profile of a model's training data, for the `drift` transform.
    Profile {
        /// Training data: CSV with a header row, or JSON lines (.jsonl).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Features to profile, comma-separated (default: every column).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Features to treat as categorical even when their values are numbers.
        #[arg(long, value_delimiter = ',')]
        categorical: Vec<String>,
        /// The model the profile describes (matched against `model.name`).
        #[arg(long)]
        model: Option<String>,
        /// The model version (matched against `model.version`; default: every version).
        #[arg(long, requires = "model")]
        model_version: Option<String>,
        /// Where to write the profile (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BufferCommand {
    /// Verify every disk buffer under DATA_DIR/buffers without changing anything: segments,
    /// records and events waiting, acknowledged position, corrupt ranges. Exits 1 when a
    /// buffer is not sound, 2 when DATA_DIR cannot be read.
    Check {
        #[arg(value_name = "DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let code = match cli.command.unwrap_or(Command::Run { config: Vec::new() }) {
        Command::Validate { files } => weir::app::validate(&files),
        Command::Buffer { command: BufferCommand::Check { data_dir } } => {
            match weir::buffers::disk::check::check_data_dir(&data_dir) {
                Ok(report) => {
                    print!("{}", report.text);
                    if report.sound { 0 } else { 1 }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            }
        }
        Command::Setup { config, kibana } => {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(weir::setup::run(&config, kibana)),
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    70
                }
            }
        }
        Command::Profile { input, features, categorical, model, model_version, out } => {
            let model = model
                .map(|name| weir::monitoring::profile::ModelId { name, version: model_version });
            weir::app::profile(
                &weir::monitoring::profile::ProfileRequest {
                    input: &input,
                    features: &features,
                    categorical: &categorical,
                    model,
                },
                &out,
            )
        }
        Command::Run { config } => match weir::app::load(&config) {
            Err(errors) => {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                78
            }
            Ok(config) => {
                let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: cannot start the runtime: {e}");
                        return ExitCode::from(70);
                    }
                };
                let code = runtime.block_on(weir::app::run(config));
                // Blocking readers (stdin) may still be parked in a read: do not wait for them.
                runtime.shutdown_timeout(std::time::Duration::from_millis(100));
                code
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option's position is mimalloc's, not a stable API: the one read back before tuning
    /// must carry mimalloc 3's own purge delay, so that a mimalloc whose options moved fails
    /// here instead of weir setting some other option.
    #[test]
    fn the_purge_delay_set_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads of mimalloc's option table; this test is the only one touching it.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(before, 1000, "mimalloc's purge_delay default, read at position 15");
        tune_allocator();
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, PURGE_DELAY_MS);
    }
}
