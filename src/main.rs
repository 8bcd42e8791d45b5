//! The `weir` command line: parse arguments, set up logging, dispatch.

use std::ffi::CStr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::io::IsTerminal;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Events are many small allocations freed on another thread than the one that made them;
/// jemalloc, with the options below, holds little beside the live blocks in that pattern, as
/// in Vector's Linux builds.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read by jemalloc at its first allocation (`MALLOC_CONF` in the
/// environment overrides them one by one):
/// - `narenas:1`: one arena for every thread. A pipeline frees a block on another thread than
///   the one that allocated it; with jemalloc's default of four arenas per CPU, each keeps
///   free pages of its own (4 to 7 MiB more at the peak in benches/compare).
/// - `background_thread:true`: a thread of jemalloc's returns freed pages to the system on
///   time, instead of whichever thread next allocates doing it;
/// - `dirty_decay_ms:100`, `muzzy_decay_ms:0`: freed pages go back after about 100 ms (the
///   default is 10 s), at once with `MADV_DONTNEED` (no lazily freed stage, which would count
///   as resident until the kernel needs the memory). Shorter decays do not return memory
///   sooner while the background thread purges (it wakes at most every 100 ms); without it,
///   shorter decays trade a little memory for noticeably more CPU (README, Memory).
/// - `thp:never`: no transparent huge pages under the heap, where the system would otherwise
///   give them to every large enough range (`/sys/kernel/mm/transparent_hugepage/enabled` set
///   to `always`): a 2 MiB page is resident as a whole however little of it is in use.
const MALLOC_CONF: &CStr =
    c"narenas:1,background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,thp:never";

/// [`MALLOC_CONF`] where jemalloc looks for it: its `const char *malloc_conf` (a C string
/// literal is NUL-terminated, and `&u8` is a plain pointer to its first byte).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
static malloc_conf: &u8 = &MALLOC_CONF.to_bytes_with_nul()[0];

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
    /// Colour in weir's own log: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines (the embedded default pipeline when no --config is given).
    Run {
        /// A pipeline file; repeat for several.
        #[arg(short, long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Reload the pipeline when its files change (SIGHUP always reloads it).
        #[arg(short, long)]
        watch_config: bool,
    },
    /// Check pipeline files and print every error (to stderr), or "Configuration OK".
    Validate {
        /// A pipeline file; repeat for several (as `run` takes them).
        #[arg(short, long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// More pipeline files, as with --config.
        #[arg(value_name = "FILE", required_unless_present = "config")]
        files: Vec<PathBuf>,
    },
    /// Run the unit tests ([[tests]]) of pipeline files: exit 0 when all pass, 1 when one
    /// fails (with what came out), 78 when the files are invalid.
    Test {
        /// Pipeline files, taken together as by `run` (the embedded default pipeline when
        /// none is given).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// More pipeline files, as with `run`.
        #[arg(short, long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Print a shell completion script: `weir completions bash > /etc/bash_completion.d/weir`
    /// (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `weir man > weir.1`, `weir man run > weir-run.1`.
    Man {
        /// A command, for its own page (weir-COMMAND(1)).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Print the events leaving components of a running weir (needs tap = true in [api]).
    Tap(TapCli),
    /// A live table of a running weir's components: rates, errors, buffers, health.
    Top {
        /// The API of the running weir.
        #[arg(long, default_value = "http://127.0.0.1:9598")]
        url: String,
        /// Time between refreshes, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
        interval_ms: u64,
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
        /// Features to treat as numeric even when they look categorical (few integer values).
        #[arg(long, value_delimiter = ',')]
        numeric: Vec<String>,
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

#[derive(clap::Args)]
struct TapCli {
    /// Components whose outputs to tap (globs: `parse*`), as --outputs-of.
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    /// Tap the events leaving these components (sources, transforms; globs allowed).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    outputs_of: Vec<String>,
    /// Tap the events going into these components (transforms, sinks; globs allowed).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    inputs_of: Vec<String>,
    /// The API of the running weir.
    #[arg(long, default_value = "http://127.0.0.1:9598")]
    url: String,
    /// How events are printed.
    #[arg(long, value_enum, default_value_t = TapFormat::Json)]
    format: TapFormat,
    /// At most this many events per interval (and per tap); weir drops the rest.
    #[arg(long, default_value_t = weir::tap::DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(weir::tap::MAX_LIMIT)))]
    limit: u32,
    /// The sampling interval, in milliseconds: --limit events per interval at most.
    #[arg(long, default_value_t = weir::tap::DEFAULT_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Exit after printing this many events.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// Print which output each event left (JSON, YAML: {"output":..,"event":..}; logfmt:
    /// output=).
    #[arg(long, short)]
    meta: bool,
    /// Say nothing on stderr but drops, the tap's end and errors.
    #[arg(long, short)]
    quiet: bool,
    /// Exit after this many milliseconds (as `vector tap --duration-ms`).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    duration_ms: Option<u64>,
    /// Exit when weir goes away (stops, restarts) instead of connecting again.
    #[arg(long)]
    no_reconnect: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TapFormat {
    Json,
    Logfmt,
    /// One YAML document per event.
    Yaml,
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether weir's log (on standard error) is coloured: `auto` colours only a terminal,
    /// and not when `NO_COLOR` is set to anything but the empty string (no-color.org).
    fn enabled(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// What `weir --help` shows after the options: an example of each command, the component
/// types and the environment variables weir reads.
fn after_help() -> String {
    const EXAMPLES: [(&str, &str); 11] = [
        ("weir run --config pipeline.toml", "run a pipeline; kill -HUP reloads it"),
        ("weir run -c a.toml -c b.toml --watch-config", "reload when the files change"),
        ("weir validate --config pipeline.toml", "every error, with file:line:column"),
        ("weir test pipeline.toml", "run the pipeline's [[tests]]"),
        ("weir setup --config pipeline.toml", "Elasticsearch templates, Kibana objects"),
        ("weir tap parse --format logfmt", "the events leaving `parse`, live"),
        ("weir top", "live rates, errors, buffers and health per component"),
        ("weir profile --input train.csv --out p.json", "reference profile for `drift`"),
        ("weir buffer check /var/lib/weir", "verify the disk buffers of a data_dir"),
        ("weir completions bash", "shell completions (also zsh, fish, ...)"),
        ("weir man run", "man pages: weir(1), weir-run(1), ..."),
    ];
    let mut text = String::from("Examples:\n");
    for (command, what) in EXAMPLES {
        text.push_str(&format!("  {command:<46}{what}\n"));
    }
    text.push_str(
        "\nComponent types (type = \"...\" in [sources.ID], [transforms.ID], [sinks.ID]):\n",
    );
    for (kind, types) in [
        ("sources:", weir::sources::SourceConfig::TYPES),
        ("transforms:", weir::transforms::TransformConfig::TYPES),
        ("sinks:", weir::sinks::SinkConfig::TYPES),
    ] {
        text.push_str(&format!("  {kind:<12}"));
        let mut width = 14;
        for (i, t) in types.iter().enumerate() {
            if i > 0 {
                text.push(',');
                if width + t.len() + 2 > 96 {
                    text.push_str(&format!("\n{:14}", ""));
                    width = 14;
                } else {
                    text.push(' ');
                    width += 2;
                }
            }
            text.push_str(t);
            width += t.len();
        }
        text.push('\n');
    }
    text.push_str(
        "\nEnvironment:
  WEIR_LOG         weir's own log level or filter: info (default), debug, weir=debug,hyper=warn
  NO_COLOR         set: no colour in weir's log (--color always overrides it)
  MALLOC_CONF      jemalloc options, each overriding weir's own (see README, Memory)
  KIBANA_ENDPOINT  Kibana's URL for `weir setup` when --kibana is not given
  ${VAR}           in pipeline files: any variable; ${VAR:-default} gives a default",
    );
    text
}

/// `weir man [COMMAND]`: the page of weir, or of one of its commands (`weir-run(1)`, as the
/// SUBCOMMANDS section of weir(1) names them).
fn man_page(name: Option<&str>) -> i32 {
    let mut weir = Cli::command().after_help(after_help());
    // Building gives each command its page name (`weir-run`) and usage (`weir run`).
    weir.build();
    let page = match name {
        None => weir,
        Some(name) => match weir.find_subcommand(name) {
            Some(command) => command.clone().version(env!("CARGO_PKG_VERSION")),
            None => {
                let names: Vec<&str> = weir.get_subcommands().map(|c| c.get_name()).collect();
                weir::say_err!("error: no command `{name}`; commands: {}", names.join(", "));
                return 2;
            }
        },
    };
    let mut text = Vec::new();
    match clap_mangen::Man::new(page).render(&mut text) {
        Ok(()) => {
            weir::output::print(text);
            0
        }
        // Rendering into memory does not fail; were it to, say so rather than print half.
        Err(e) => {
            weir::say_err!("error: cannot render the page: {e}");
            70
        }
    }
}

fn init_logging(format: LogFormat, color: Color) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its own complaint about a failed write is an `eprintln!`, which panics on a closed
        // standard error (`weir run 2>&1 | head`): a log line that cannot be written is lost.
        .log_internal_errors(false)
        .with_ansi(color.enabled());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().after_help(after_help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format, cli.color);
    let code = match cli.command.unwrap_or(Command::Run { config: Vec::new(), watch_config: false })
    {
        Command::Validate { mut config, files } => {
            config.extend(files);
            weir::app::validate(&config)
        }
        Command::Test { mut config, files } => {
            config.extend(files);
            weir::pipeline_test::command(&config)
        }
        Command::Completions { shell } => {
            let mut command = Cli::command().after_help(after_help());
            // Into memory first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "weir", &mut script);
            weir::output::print(script);
            0
        }
        Command::Man { command } => man_page(command.as_deref()),
        Command::Tap(tap) => tap_command(tap),
        Command::Top { url, interval_ms } => weir::top::run(weir::top::TopArgs {
            url,
            interval: std::time::Duration::from_millis(interval_ms),
        }),
        Command::Buffer { command: BufferCommand::Check { data_dir } } => {
            match weir::buffers::disk::check::check_data_dir(&data_dir) {
                Ok(report) => {
                    weir::output::print(&report.text);
                    if report.sound { 0 } else { 1 }
                }
                Err(e) => {
                    weir::say_err!("error: {e}");
                    2
                }
            }
        }
        Command::Setup { config, kibana } => {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(weir::setup::run(&config, kibana)),
                Err(e) => {
                    weir::say_err!("error: cannot start the runtime: {e}");
                    70
                }
            }
        }
        Command::Profile { input, features, categorical, numeric, model, model_version, out } => {
            let model = model
                .map(|name| weir::monitoring::profile::ModelId { name, version: model_version });
            weir::app::profile(
                &weir::monitoring::profile::ProfileRequest {
                    input: &input,
                    features: &features,
                    categorical: &categorical,
                    numeric: &numeric,
                    model,
                },
                &out,
            )
        }
        Command::Run { config: paths, watch_config } => match weir::app::load(&paths) {
            Err(errors) => {
                for e in &errors {
                    weir::say_err!("error: {e}");
                }
                78
            }
            Ok(config) => {
                let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        weir::say_err!("error: cannot start the runtime: {e}");
                        return ExitCode::from(70);
                    }
                };
                let options = weir::app::RunOptions { paths, watch_config };
                let code = runtime.block_on(weir::app::run(config, options));
                // Blocking readers (stdin) may still be parked in a read: do not wait for them.
                runtime.shutdown_timeout(std::time::Duration::from_millis(100));
                code
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `weir tap`: runs the client on a small runtime of its own.
fn tap_command(tap: TapCli) -> i32 {
    let mut outputs_of = tap.ids;
    outputs_of.extend(tap.outputs_of);
    if outputs_of.is_empty() && tap.inputs_of.is_empty() {
        weir::say_err!("error: name what to tap: weir tap ID, --outputs-of ID or --inputs-of ID");
        return 2;
    }
    let args = weir::tap::client::TapArgs {
        url: tap.url,
        outputs_of,
        inputs_of: tap.inputs_of,
        format: match tap.format {
            TapFormat::Json => weir::tap::client::Format::Json,
            TapFormat::Logfmt => weir::tap::client::Format::Logfmt,
            TapFormat::Yaml => weir::tap::client::Format::Yaml,
        },
        limit: tap.limit,
        interval_ms: tap.interval_ms,
        count: tap.count,
        meta: tap.meta,
        quiet: tap.quiet,
        duration: tap.duration_ms.map(std::time::Duration::from_millis),
        reconnect: !tap.no_reconnect,
    };
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(weir::tap::client::run(args)),
        Err(e) => {
            weir::say_err!("error: cannot start the runtime: {e}");
            70
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::{CStr, c_void};

    /// Reads one of jemalloc's options, of the type of `value`.
    fn option<T: Copy>(name: &CStr, mut value: T) -> T {
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `name` is NUL-terminated; `value` is `len` bytes of the option's type, as
        // jemalloc's manual gives it for each name read below.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "mallctl {name:?}");
        value
    }

    /// The options weir exports are the ones jemalloc runs with: a misspelt option, or a
    /// build where jemalloc looks for another symbol name, would leave its defaults (four
    /// arenas per CPU, freed pages kept 10 s) without any error.
    #[test]
    fn jemalloc_runs_with_weirs_options() {
        if std::env::var_os("MALLOC_CONF").is_some() {
            return;
        }
        assert_eq!(option(c"opt.narenas", 0u32), 1);
        assert!(option(c"opt.background_thread", false));
        assert_eq!(option(c"opt.dirty_decay_ms", 0isize), 100);
        assert_eq!(option(c"opt.muzzy_decay_ms", -1isize), 0);
        let thp = option(c"opt.thp", std::ptr::null::<std::ffi::c_char>());
        // SAFETY: jemalloc hands out a pointer to one of its static NUL-terminated names.
        assert_eq!(unsafe { CStr::from_ptr(thp) }, c"never");
    }
}
