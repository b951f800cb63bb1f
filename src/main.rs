//! Wiring only: parse the command line, load the settings, set up logging, then make one
//! library call per command.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use webex_archiver::cli::{Cli, Command, ConfigCommand};
use webex_archiver::config::{Needs, Settings, Sources};
use webex_archiver::{app, shutdown, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let needs = match &cli.command {
        Command::Config(ConfigCommand::Check(_)) | Command::Run | Command::Sync(_) | Command::Backfill(_) => {
            Needs::Webex
        }
        Command::Migrate | Command::Status(_) | Command::Retry(_) | Command::Verify(_) => Needs::StateOnly,
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
        let stop = CancellationToken::new();
        shutdown::cancel_on_signals(stop.clone());
        match cli.command {
            Command::Migrate => app::migrate(&settings).await,
            Command::Config(ConfigCommand::Check(_)) => app::config_check(&settings),
            Command::Status(args) => app::status(&settings, args.json).await,
            Command::Verify(args) => app::verify(&settings, args.sample, args.json).await,
            Command::Retry(args) => app::retry(&settings, (!args.failed).then_some(args.ids)).await,
            Command::Run => {
                let abort = CancellationToken::new();
                let services = app::Services::build(settings, abort.clone()).await?;
                app::run(services, stop, abort).await
            }
            Command::Sync(args) => {
                let services = app::Services::build(settings, stop.clone()).await?;
                let report = app::sync(&services, args.discover_only, &stop).await?;
                app::report_sync(&report);
                Ok(report.exit)
            }
            Command::Backfill(args) => {
                let now = Utc::now();
                let until = args.until.map_or(now, |u| u.resolve(now));
                let services = app::Services::build(settings, stop.clone()).await?;
                let report =
                    app::backfill(&services, args.since.resolve(now), until, args.discover_only, &stop).await?;
                app::report_sync(&report);
                Ok(report.exit)
            }
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
