//! The `dpsd` command line: parses arguments and hands each verb to `dpsd::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dpsd::commands::{self, Failure, Global};
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
    /// The daemon: keeps the replicas of every workers.d file running (the default)
    Run,
    /// Run one replica of worker NAME in the foreground (Ctrl-C drains and exits)
    Worker {
        name: String,
        /// Replica number, shown in logs
        #[arg(long, default_value_t = 0)]
        replica: u32,
    },
    /// Validate all configuration files; print every problem with file and line
    Check,
    /// Jobs of jobs.d
    #[command(subcommand)]
    Job(JobCommand),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = Global {
        source: Source {
            config: cli.config,
            env: cli.env,
        },
        verbose: cli.verbose,
    };
    match run(&global, cli.command.unwrap_or(Command::Run)) {
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
        Command::Run => runtime()?.block_on(commands::run(global)),
        Command::Job(JobCommand::Run { name }) => {
            runtime()?.block_on(commands::job_run(global, &name))
        }
        Command::Worker { name, replica } => {
            runtime()?.block_on(commands::worker(global, &name, replica))
        }
        Command::Send { queue, json, count } => {
            runtime()?.block_on(commands::send(global, &queue, json.as_deref(), count))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}
