//! Outbound network policies (`network` on create and PATCH): resolved to
//! IPv4 addresses and CIDRs and enforced by the runtime's nftables rules.
//! Hostnames are resolved when the policy is applied (at start, resume,
//! restart of the server, and PATCH), not continuously.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use alcove_runtime::network::{EgressPolicy, Slot};
use alcove_wire::sandbox::NetworkConfig;

use super::ControlError;
use super::context::Context;
use crate::store::SandboxRecord;

fn invalid(field: &'static str, reason: String) -> ControlError {
    ControlError::InvalidArgument { field, reason }
}

/// One `allow_out`/`deny_out` entry as nftables destinations.
async fn resolve_entry(field: &'static str, entry: &str) -> Result<Vec<String>, ControlError> {
    let entry = entry.trim();
    if let Some((ip, len)) = entry.split_once('/') {
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            invalid(
                field,
                format!("{entry:?} is not an IPv4 CIDR (IPv6 is not supported)"),
            )
        })?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| invalid(field, format!("{entry:?} has a bad prefix length")))?;
        return Ok(vec![format!("{ip}/{len}")]);
    }
    match entry.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => return Ok(vec![ip.to_string()]),
        Ok(IpAddr::V6(_)) => {
            return Err(invalid(
                field,
                format!("{entry:?}: IPv6 is not supported (sandboxes have no IPv6 route)"),
            ));
        }
        Err(_) => {}
    }
    let valid_host = !entry.is_empty()
        && entry.len() <= 253
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_host {
        return Err(invalid(
            field,
            format!("{entry:?} is not an IPv4 address, CIDR or hostname"),
        ));
    }
    let lookup = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((entry, 0)));
    let addrs: Vec<String> = match lookup.await {
        Ok(Ok(addrs)) => addrs
            .filter_map(|a| match a.ip() {
                IpAddr::V4(ip) => Some(ip.to_string()),
                IpAddr::V6(_) => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if addrs.is_empty() {
        return Err(invalid(
            field,
            format!("could not resolve {entry:?} to an IPv4 address"),
        ));
    }
    let mut addrs = addrs;
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Resolves a policy into what the runtime enforces.
pub(super) async fn egress_policy(cfg: &NetworkConfig) -> Result<EgressPolicy, ControlError> {
    let mut policy = EgressPolicy {
        allow_internet: cfg.allow_internet_access,
        ..EgressPolicy::default()
    };
    for entry in &cfg.allow_out {
        policy
            .allow
            .extend(resolve_entry("network.allow_out", entry).await?);
    }
    for entry in &cfg.deny_out {
        policy
            .deny
            .extend(resolve_entry("network.deny_out", entry).await?);
    }
    Ok(policy)
}

/// The policy of a sandbox that asked for none.
pub(super) fn open_policy() -> NetworkConfig {
    NetworkConfig {
        allow_internet_access: true,
        allow_out: Vec::new(),
        deny_out: Vec::new(),
    }
}

impl Context {
    /// Enforces the stored policy of a sandbox in `slot` (replacing earlier rules).
    pub(super) async fn apply_network(
        &self,
        record: &SandboxRecord,
        slot: Slot,
    ) -> Result<(), ControlError> {
        let policy = egress_policy(&record.network_policy).await?;
        self.node.apply_egress(slot, &policy).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_resolve_or_are_refused() {
        assert_eq!(
            resolve_entry("f", "10.0.0.0/8").await.expect("cidr"),
            vec!["10.0.0.0/8"]
        );
        assert_eq!(
            resolve_entry("f", " 1.2.3.4 ").await.expect("ip"),
            vec!["1.2.3.4"]
        );
        assert_eq!(
            resolve_entry("f", "localhost").await.expect("host"),
            vec!["127.0.0.1"]
        );
        for bad in [
            "10.0.0.0/40",
            "::1",
            "2001:db8::/32",
            "not a host",
            "a/b",
            "",
        ] {
            assert!(resolve_entry("f", bad).await.is_err(), "{bad:?} accepted");
        }
        let p = egress_policy(&NetworkConfig {
            allow_internet_access: false,
            allow_out: vec!["1.2.3.4".into()],
            deny_out: vec!["5.6.0.0/16".into()],
        })
        .await
        .expect("policy");
        assert!(!p.allow_internet);
        assert_eq!(
            (p.allow, p.deny),
            (vec!["1.2.3.4".to_string()], vec!["5.6.0.0/16".to_string()])
        );
    }
}
