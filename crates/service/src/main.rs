use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use llm_incident_manager::app::{self, Application};
use llm_incident_manager::clock::SystemClock;
use llm_incident_manager::config::{Overrides, Settings};
use llm_incident_manager::telemetry;

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
    /// Run the service (HTTP API, /metrics listener).
    Serve(Overrides),
    /// Create or upgrade the database schema, then exit.
    Migrate(Overrides),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (file, environment, flags) without starting.
    Check(Overrides),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Command::Serve(overrides) | Command::Migrate(overrides) => overrides,
        Command::Config {
            command: ConfigCommand::Check(overrides),
        } => overrides,
    };
    let settings = match Settings::load(overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Config { .. } => {
                println!(
                    "configuration is valid: http {}, grpc {}, metrics {}, database {}",
                    settings.http.addr,
                    settings.grpc_addr,
                    settings.metrics_addr,
                    app::redact(&settings.database.url)
                );
                Ok(())
            }
            Command::Migrate(_) => {
                telemetry::init_logging(&settings.log);
                let options = lim_store::StoreOptions {
                    max_connections: 1,
                    observer: None,
                };
                lim_store::connect(&settings.database.url, options).await?;
                println!("database at {} is migrated", app::redact(&settings.database.url));
                Ok(())
            }
            Command::Serve(_) => {
                telemetry::init_logging(&settings.log);
                let application = Application::build(&settings, Arc::new(SystemClock)).await?;
                application.run_until_stopped(app::shutdown_signal()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
