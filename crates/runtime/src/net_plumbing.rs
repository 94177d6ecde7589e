//! The server's side of a new sandbox's network plumbing.
//!
//! A restored sandbox's network is plumbed by its `createRuntime` hook (see
//! [`crate::hook`]), before CRIU restores any process. A new sandbox has no
//! hook: running one costs runc a few milliseconds of every start, and
//! nothing in a new container needs its network or its namespace limits
//! before the server first calls its agent. Once `runc run` has returned, the
//! server plumbs the network and sets the limits here ([`plumb`]), on a
//! thread of its own, while the agent starts, and before the agent is called.
//!
//! Nothing is left behind when a start fails half-way: the only host-side
//! object the plumbing makes is the veth pair, whose sandbox end lives in the
//! container's namespace, and deleting either end of a veth pair deletes both.
//! When the container goes, its namespace goes, and the pair with it.

use crate::error::{Result, RuntimeError};
use crate::network::SandboxNet;
use crate::userns::NamespaceLimits;

/// Plumbs `net` (a `/prefix` point-to-point block) into the network namespace
/// of the container whose init is `pid`, and writes `limits` into its user
/// namespace, on a thread that ends right after: entering the container's
/// network namespace is per thread, and a thread that failed to come back must
/// never serve anything else.
pub async fn plumb(net: SandboxNet, prefix: u8, pid: i32, limits: NamespaceLimits) -> Result<()> {
    let (tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("net-plumbing".into())
        .spawn(move || {
            let mut lap = crate::node::Laps::new(std::time::Instant::now());
            let result = crate::network::attach_blocking(&net, prefix, pid);
            let attach_ms = lap.split();
            let result = result.and_then(|()| {
                if limits.is_empty() {
                    Ok(())
                } else {
                    crate::userns::write_namespace_limits(pid, &limits)
                }
            });
            let total_ms = attach_ms + lap.split();
            tracing::debug!(attach_ms, total_ms, "network plumbed");
            let _ = tx.send(result);
        })
        .map_err(|e| RuntimeError::Config(format!("starting the plumbing thread: {e}")))?;
    done.await.map_err(|_| {
        RuntimeError::Config("the network plumbing thread ended without an answer".into())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_plumbing_is_reported() {
        let net = SandboxNet {
            slot: crate::network::Slot(1),
            netns: "alcove-test-1".into(),
            host_veth: "avtest1".into(),
            host_ip: "10.254.0.1".parse().expect("ip"),
            sandbox_ip: "10.254.0.2".parse().expect("ip"),
        };
        // No such process: opening its namespace fails, and so does the start.
        assert!(plumb(net, 30, i32::MAX, Vec::new()).await.is_err());
    }
}
