//! Wiring only: parse the command line, load the settings, set up logging, then make one
//! library call per command.

use std::process::ExitCode;

use clap::Parser;
use webex_archiver::cli::{Cli, Command, ConfigCommand};
use webex_archiver::config::{LogFormat, LogSettings, Needs, Settings, Sources};
use webex_archiver::{app, shutdown, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let needs = match &cli.command {
        Command::Config(ConfigCommand::Check(_)) => Needs::Webex,
        Command::Migrate => Needs::StateOnly,
        // The simulator needs no settings at all.
        Command::Simulate(args) => return simulate(args.clone()),
    };
    let sources = Sources::from_process(cli.config.clone(), cli.data_dir.clone());
    let settings = match Settings::load(&sources, needs) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(app::EXIT_CONFIG);
        }
    };
    telemetry::init(&settings.log, sources.env.get("RUST_LOG").map(String::as_str));

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Migrate => app::migrate(&settings).await,
            Command::Config(ConfigCommand::Check(_)) => app::config_check(&settings),
            Command::Simulate(_) => unreachable!("dispatched above"),
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "command failed");
            ExitCode::FAILURE
        }
    }
}

/// `simulate` needs no settings: default logging, then the simulator until a signal.
fn simulate(args: webex_archiver::sim::SimulateArgs) -> ExitCode {
    let sources = Sources::from_process(None, None);
    let log = LogSettings { format: LogFormat::Pretty, filter: "info".into() };
    telemetry::init(&log, sources.env.get("RUST_LOG").map(String::as_str));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        shutdown::cancel_on_signals(cancel.clone());
        webex_archiver::sim::simulate_command(args, cancel).await
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
