//! `alcove serve`.

use anyhow::Context;

/// Binds the listener and serves until ctrl-c or SIGTERM.
pub async fn run(config: alcove_server::Config) -> anyhow::Result<()> {
    config.validate().context("checking the configuration")?;
    // Before the connection cap is derived from it (the cap is min(4096, soft - 512)).
    alcove_server::listener::raise_fd_soft_limit();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let (trigger, shutdown) = alcove_server::shutdown_channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    alcove_server::serve(config, listener, shutdown)
        .await
        .context("running the server")
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
