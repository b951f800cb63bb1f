//! `webex-archiver simulate`: the simulator as a process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{SimConfig, Simulator};

/// `simulate` flags. Flags win over the scenario file.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Address of the API host; default: the scenario's `listen`, else 127.0.0.1:0.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the site (download) host; default: the API host's IP, a free port.
    #[arg(long, value_name = "ADDR")]
    pub site_listen: Option<SocketAddr>,
    /// Address of the trap host (where no answer should lead); default: the API host's
    /// IP, a free port.
    #[arg(long, value_name = "ADDR")]
    pub trap_listen: Option<SocketAddr>,
    /// Install the hostile preset (issue 11's faults on a subset chosen by the seed, and
    /// a storm of `Retry-After: 0` at start); its plan is at `GET /_sim/hostile`.
    #[arg(long)]
    pub hostile: bool,
    /// Number of recordings at start.
    #[arg(long, value_name = "N")]
    pub recordings: Option<usize>,
    /// Seed of the population.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// One fixed size for every recording, bytes.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// Scenario file (TOML); see the `sim` module documentation and
    /// config/sim-scenario.example.toml.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
}

/// The first line `simulate` prints: where to connect and with what.
#[derive(Debug, Serialize)]
struct Banner {
    api_base_url: String,
    site_base_url: String,
    trap_base_url: String,
    hostile: bool,
    access_token: String,
    recordings: usize,
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

/// Runs the simulator until `cancel` fires. The first line on stdout is one JSON object
/// (`api_base_url`, `site_base_url`, `trap_base_url`, `hostile`, `access_token`,
/// `recordings`, `client_id`, `client_secret`, `refresh_token`).
pub async fn simulate_command(args: SimulateArgs, cancel: CancellationToken) -> anyhow::Result<u8> {
    let mut config = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the scenario file {}", path.display()))?;
            SimConfig::from_toml(&text).with_context(|| format!("parsing the scenario file {}", path.display()))?
        }
        None => SimConfig::default(),
    };
    if args.listen.is_some() {
        config.listen = args.listen;
    }
    if args.site_listen.is_some() {
        config.site_listen = args.site_listen;
    }
    if args.trap_listen.is_some() {
        config.trap_listen = args.trap_listen;
    }
    if args.hostile {
        config.hostile = true;
    }
    if let Some(n) = args.recordings {
        config.recordings = n;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if args.size.is_some() {
        config.size = args.size;
    }
    let sim = Simulator::start(config).await.context("starting the Webex simulator")?;
    let banner = Banner {
        api_base_url: sim.api_base_url(),
        site_base_url: sim.site_base_url(),
        trap_base_url: sim.trap_base_url(),
        hostile: sim.hostile_plan().is_some(),
        access_token: sim.access_token(),
        recordings: sim.truth_without_digests().len(),
        client_id: sim.client_id(),
        client_secret: sim.client_secret(),
        refresh_token: sim.refresh_token(),
    };
    let line = serde_json::to_string(&banner).context("writing the banner")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    tracing::info!(
        api = %banner.api_base_url,
        site = %banner.site_base_url,
        trap = %banner.trap_base_url,
        "webex simulator running"
    );
    cancel.cancelled().await;
    sim.shutdown().await;
    Ok(0)
}
