//! The `dpsd` command line: parses arguments and hands each verb to `dpsd::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dpsd::commands::{self, Failure, Global, Target};
use dpsd::config::Source;

#[derive(Parser)]
#[command(
    name = "dpsd",
    version,
    about = "Data-processing chains on RabbitMQ and MongoDB"
)]
struct Cli {
    /// Main configuration file [default: ./etc/dpsd.yaml if present, else /etc/dpsd/dpsd.yaml]
    #[arg(long, global = true, env = "DPSD_CONFIG")]
    config: Option<PathBuf>,
    /// Overlay to apply: dpsd.<ENV>.yaml beside the main file
    #[arg(long, global = true, env = "DPSD_ENV")]
    env: Option<String>,
    /// Log dpsd's own debug messages
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: HTTP API, job scheduler, and the replicas of every workers.d file (the default)
    Run {
        /// The API and the scheduler only: no replicas (each worker runs as `dpsd worker NAME`)
        #[arg(long)]
        no_workers: bool,
    },
    /// Run one replica of worker NAME in the foreground (Ctrl-C drains and exits)
    Worker {
        name: String,
        /// Replica number, shown in logs
        #[arg(long, default_value_t = 0)]
        replica: u32,
        /// Started by `dpsd run`: the configuration comes on stdin, counts go to stdout
        #[arg(long, hide = true)]
        supervised: bool,
        /// Serve this replica's /livez, /readyz and /metrics on ADDR (e.g. 0.0.0.0:3001)
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Probe a running daemon's /livez (or /readyz): exit 0 when it answers 200, else 1
    Health {
        /// The daemon's base URL [default: http:// and api.listen, 0.0.0.0 asked as 127.0.0.1]
        #[arg(long)]
        url: Option<String>,
        /// Probe /readyz (RabbitMQ, the store, every worker's replicas) instead of /livez
        #[arg(long)]
        ready: bool,
    },
    /// Validate all configuration files; print every problem with file and line
    Check,
    /// Jobs of jobs.d
    #[command(subcommand)]
    Job(JobCommand),
    /// The failed-message store: parked messages
    #[command(subcommand)]
    Failed(FailedCommand),
    /// Cancel an execution on every host (running services stopped, later deliveries skipped)
    Cancel { execution_id: String },
    /// Publish one message (JSON argument, or stdin when absent or "-"); prints its executionId
    Send {
        queue: String,
        json: Option<String>,
        /// Publish this many copies, each with its own executionId
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Run job NAME's action once in the foreground, as the scheduler would
    Run { name: String },
    /// The next fire times of job NAME, in UTC and in its timezone (from its file; no server)
    Preview {
        name: String,
        /// How many fire times, 1 to 1000
        #[arg(short = 'n', default_value_t = 10)]
        n: u32,
    },
}

#[derive(Subcommand)]
enum FailedCommand {
    /// List parked messages, oldest first
    List {
        #[arg(long)]
        worker: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        skip: u64,
        /// Print the page as JSON ({"items": [...], "total": N})
        #[arg(long)]
        json: bool,
    },
    /// Put parked messages back on their worker's queue (attempts reset)
    Replay {
        /// One message, by id
        #[arg(required_unless_present_any = ["worker", "all"], conflicts_with_all = ["worker", "all"])]
        id: Option<String>,
        /// Every parked message of this worker
        #[arg(long, conflicts_with = "all")]
        worker: Option<String>,
        /// Every parked message
        #[arg(long)]
        all: bool,
    },
    /// Discard one parked message
    Delete { id: String },
}

fn main() -> ExitCode {
    // First, before any thread: as PID 1 (a container) an init stays behind to reap orphans.
    if let Some(code) = dpsd::init::split_if_pid_1() {
        return code;
    }
    let cli = Cli::parse();
    let global = Global {
        source: Source {
            config: cli.config,
            env: cli.env,
        },
        verbose: cli.verbose,
    };
    let command = cli.command.unwrap_or(Command::Run { no_workers: false });
    match run(&global, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("dpsd: {failure}");
            ExitCode::from(failure.exit_code() as u8)
        }
    }
}

fn run(global: &Global, command: Command) -> Result<(), Failure> {
    match command {
        Command::Check => commands::check(global),
        Command::Run { no_workers } => runtime()?.block_on(commands::run(global, !no_workers)),
        Command::Health { url, ready } => {
            single_threaded()?.block_on(commands::health(global, url.as_deref(), ready))
        }
        Command::Job(JobCommand::Run { name }) => {
            runtime()?.block_on(commands::job_run(global, &name))
        }
        Command::Job(JobCommand::Preview { name, n }) => commands::job_preview(global, &name, n),
        Command::Worker {
            name,
            replica,
            supervised,
            listen,
        } => {
            let worker = commands::worker(global, &name, replica, supervised, listen.as_deref());
            single_threaded()?.block_on(worker)
        }
        Command::Send { queue, json, count } => {
            runtime()?.block_on(commands::send(global, &queue, json.as_deref(), count))
        }
        Command::Failed(command) => runtime()?.block_on(failed(global, command)),
        Command::Cancel { execution_id } => {
            single_threaded()?.block_on(commands::cancel(global, &execution_id))
        }
    }
}

async fn failed(global: &Global, command: FailedCommand) -> Result<(), Failure> {
    match command {
        FailedCommand::List {
            worker,
            limit,
            skip,
            json,
        } => commands::failed_list(global, worker.as_deref(), limit, skip, json).await,
        FailedCommand::Replay { id, worker, all } => {
            let target = match (id, worker) {
                (Some(id), _) => Target::One(id),
                (None, Some(worker)) => Target::Worker(worker),
                (None, None) if all => Target::All,
                _ => return Err(Failure::Usage("give an id, --worker W or --all".into())),
            };
            commands::failed_replay(global, target).await
        }
        FailedCommand::Delete { id } => commands::failed_delete(global, &id).await,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    built(tokio::runtime::Builder::new_multi_thread())
}

/// A replica's runtime: one thread. Its work is waiting on the broker and the store, and
/// replicas scale by process, so a thread pool only adds wake-ups between threads (measured:
/// see docs/BENCHMARKS.md).
fn single_threaded() -> Result<tokio::runtime::Runtime, Failure> {
    built(tokio::runtime::Builder::new_current_thread())
}

fn built(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, Failure> {
    builder
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}
