//! Stop signals. The first SIGTERM or SIGINT cancels the token every long-running piece
//! watches (stop claiming, drain, then exit); a second one exits at once.

use tokio_util::sync::CancellationToken;

/// Exit status after a second signal: the conventional 128 + SIGINT.
const FORCED_EXIT: i32 = 130;

/// Cancels `token` on the first SIGTERM/SIGINT and exits the process on the second.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop signal received: finishing in-flight work (send it again to exit at once)");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second stop signal: exiting now");
        std::process::exit(FORCED_EXIT);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; relying on SIGINT");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
