use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use llm_incident_manager::app::{self, Application};
use llm_incident_manager::client::{
    self, EventCommand, IncidentCommand, JobCommand, ScheduleCommand, ServerArgs, SilenceCommand,
};
use llm_incident_manager::clock::SystemClock;
use llm_incident_manager::config::{Overrides, Settings};
use llm_incident_manager::telemetry;

/// mimalloc instead of glibc's allocator: a batch of events allocates on the async
/// threads and frees on the SQLite writer (and back), which glibc's per-thread arenas
/// handle badly (`malloc_consolidate`, arena locks); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "llm-incident-manager",
    version,
    about = "Incident manager for teams that run LLMs in production"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (HTTP and gRPC APIs, /metrics listener).
    Serve(Overrides),
    /// Create or upgrade the database schema, then exit.
    Migrate(Overrides),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Send events to a running server.
    Events {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: EventCommand,
    },
    /// List, show, assign, acknowledge, resolve and watch incidents on a running server.
    Incidents {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// List background jobs and retry dead ones on a running server.
    Jobs {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Silence incidents for a while, list, show and expire silences on a running server.
    Silences {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Who is on call, and the shifts of the on-call schedules of a running server.
    Schedules {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Create, list and revoke API keys (against the store, as `migrate` works).
    Keys {
        #[command(subcommand)]
        command: llm_incident_manager::auth::KeyCommand,
    },
    /// Have a running server read its configuration file again (as SIGHUP does).
    Reload {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (file, environment, flags) without starting.
    Check(Overrides),
}

/// What a server-side command does once its configuration is valid.
enum ServiceTask {
    CheckConfig,
    Migrate,
    Serve,
}

fn main() -> ExitCode {
    llm_incident_manager::tls::install_crypto_provider();
    match Cli::parse().command {
        Command::Serve(overrides) => run_service(ServiceTask::Serve, &overrides),
        Command::Migrate(overrides) => run_service(ServiceTask::Migrate, &overrides),
        Command::Config {
            command: ConfigCommand::Check(overrides),
        } => run_service(ServiceTask::CheckConfig, &overrides),
        Command::Events { server, command } => finish(block_on(client::run_event(&server, command))),
        Command::Incidents { server, command } => finish(block_on(client::run_incident(&server, command))),
        Command::Jobs { server, command } => finish(block_on(client::run_job(&server, command))),
        Command::Silences { server, command } => finish(block_on(client::run_silence(&server, command))),
        Command::Schedules { server, command } => finish(block_on(client::run_schedule(&server, command))),
        Command::Reload { server } => finish(block_on(client::run_reload(&server))),
        Command::Keys { command } => run_keys(command),
    }
}

fn run_service(task: ServiceTask, overrides: &Overrides) -> ExitCode {
    let settings = match Settings::load(overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !matches!(task, ServiceTask::CheckConfig) {
        telemetry::init_logging(&settings.log);
    }
    finish(block_on(async {
        match task {
            ServiceTask::CheckConfig => {
                // What a reload would build too: channels with their clients and servers.
                let metrics = std::sync::Arc::new(llm_incident_manager::telemetry::Metrics::new("check"));
                llm_incident_manager::live::Live::from_settings(&settings, metrics)?;
                println!(
                    "configuration is valid: http {}, grpc {}, metrics {}, database {}; \
                     {} channels, {} routes, {} people, {} schedules, {} escalation policies",
                    settings.http.addr,
                    settings.grpc_addr,
                    settings.metrics_addr,
                    app::redact(&settings.database.url),
                    settings.channels.len(),
                    settings.routes.len(),
                    settings.people.len(),
                    settings.schedules.len(),
                    settings.policies.len(),
                );
                Ok(())
            }
            ServiceTask::Migrate => {
                let options = lim_store::StoreOptions {
                    max_connections: 1,
                    ..lim_store::StoreOptions::default()
                };
                lim_store::connect(&settings.database.url, options).await?;
                println!("database at {} is migrated", app::redact(&settings.database.url));
                Ok(())
            }
            ServiceTask::Serve => {
                let application = Application::build(&settings, overrides.clone(), Arc::new(SystemClock)).await?;
                application.run_until_stopped(app::shutdown_signal()).await
            }
        }
    }))
}

fn run_keys(command: llm_incident_manager::auth::KeyCommand) -> ExitCode {
    let settings = match Settings::load(command.overrides()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    finish(block_on(async {
        let output = llm_incident_manager::auth::run_key_command(command, &settings).await?;
        print!("{output}");
        Ok(())
    }))
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new()
        .expect("cannot start the tokio runtime")
        .block_on(work)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
