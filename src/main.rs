//! Wiring only: parse the command line, load the settings, set up logging, then make one
//! library call per command.

use std::future::Future;
use std::process::ExitCode;

use chrono::Utc;
use clap::{CommandFactory as _, Parser};
use tokio_util::sync::CancellationToken;
use webex_archiver::cli::{Cli, Command, ConfigCommand, HoldCommand, RetentionCommand};
use webex_archiver::config::{LogFormat, LogSettings, Needs, Settings, Sources};
use webex_archiver::{app, demo, shutdown, sim, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources::from_process(cli.config.clone(), cli.data_dir.clone());
    let rust_log = sources.env.get("RUST_LOG").cloned();
    let needs = match &cli.command {
        // The simulator and the demo bring their own settings.
        Command::Simulate(_) | Command::Demo(_) => {
            telemetry::init(&LogSettings { format: LogFormat::Pretty, filter: "warn".into() }, rust_log.as_deref());
            let data_dir = sources.data_dir.clone().unwrap_or_else(|| "webex-archiver-data".into());
            return block_on(|stop| async move {
                match cli.command {
                    Command::Simulate(args) => sim::simulate_command(args, stop).await,
                    Command::Demo(args) => {
                        let options = demo::DemoOptions {
                            data_dir,
                            recordings: args.recordings,
                            size: args.size,
                            faults: args.faults,
                        };
                        let report = demo::run(options, &stop).await?;
                        print!("{}", report.text());
                        Ok(if report.success() { 0 } else { app::EXIT_INCOMPLETE })
                    }
                    _ => unreachable!("only the simulator and the demo are dispatched here"),
                }
            });
        }
        Command::Config(ConfigCommand::Check(_)) | Command::Run | Command::Sync(_) | Command::Backfill(_) => {
            Needs::Webex
        }
        Command::Migrate
        | Command::Status(_)
        | Command::Retry(_)
        | Command::Verify(_)
        | Command::History(_)
        | Command::Hold(_)
        | Command::Retention(_) => Needs::StateOnly,
        Command::Report(args) => match args.period() {
            Ok(_) => Needs::StateOnly,
            Err(e) => Cli::command().error(clap::error::ErrorKind::ArgumentConflict, e).exit(),
        },
    };
    let settings = match Settings::load(&sources, needs) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(app::EXIT_CONFIG);
        }
    };
    telemetry::init(&settings.log, rust_log.as_deref());
    block_on(|stop| async move {
        match cli.command {
            Command::Migrate => app::migrate(&settings).await,
            Command::Config(ConfigCommand::Check(_)) => app::config_check(&settings).await,
            Command::Hold(HoldCommand::Add(args)) => app::hold(&settings, args.ids, true, &args.reason).await,
            Command::Hold(HoldCommand::Remove(args)) => app::hold(&settings, args.ids, false, &args.reason).await,
            Command::Hold(HoldCommand::List(args)) => app::hold_list(&settings, args.json).await,
            Command::Retention(RetentionCommand::Extend(args)) => {
                app::retention_extend(&settings, args.ids, args.until).await
            }
            Command::Status(args) => app::status(&settings, args.json).await,
            Command::Verify(args) if args.log => app::verify_log(&settings, args.json).await,
            Command::Verify(args) if args.manifests => app::verify_manifests(&settings, args.all, args.json).await,
            Command::Verify(args) => app::verify(&settings, args.sample, args.json).await,
            Command::History(args) => app::history(&settings, args.id, args.json).await,
            Command::Report(args) => {
                let period = args.period().map_err(anyhow::Error::msg)?;
                app::report(&settings, period, args.format, args.out.as_deref()).await
            }
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
            Command::Simulate(_) | Command::Demo(_) => unreachable!("dispatched before the settings are loaded"),
        }
    })
}

/// Runs one command on a runtime whose stop token fires on SIGTERM/SIGINT.
fn block_on<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<u8>>,
{
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
        command(stop).await
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        // The bucket does not match storage.object_lock: a configuration error.
        Err(e) if e.downcast_ref::<app::PostureMismatch>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(app::EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %webex_archiver::errors::ErrorChain(e.as_ref()), "command failed");
            ExitCode::FAILURE
        }
    }
}
