//! Sandbox networking: one network namespace per sandbox, joined to the host by a
//! veth pair with a private /30, outbound traffic NATed, and nftables rules that
//! keep sandboxes away from the host and from each other.
//!
//! The namespace itself is created by runc inside the sandbox's user namespace.
//! The veth pair is plumbed over netlink (`netlink.rs`): by the node once `runc
//! run` returns for a new sandbox (`crate::net_plumbing`), by the container's
//! hook on a restore; the node then names the namespace (`/var/run/netns/<name>`,
//! so that `ip -n` and the clean-up find it) in the host's mount namespace.
//!
//! Every name carries the instance tag so that two servers on one host (a dev
//! server and a test server) never touch each other's resources.

mod addr;
mod netlink;
mod nft;
mod overlap;

pub use addr::{Slot, Subnet};
pub use netlink::NETNS_DIR;
pub use nft::EgressPolicy;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cmd;
use crate::error::Result;

/// Host-side network plumbing of one runtime instance.
#[derive(Debug)]
pub struct Network {
    tag: String,
    subnet: Subnet,
    /// Slots that have egress rules now (the table is rebuilt empty at start),
    /// so open policies cost no `nft` call.
    restricted: std::sync::Mutex<std::collections::HashSet<u32>>,
}

/// The addresses and names of one sandbox's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNet {
    /// Slot in the subnet (stable across suspend/resume).
    pub slot: Slot,
    /// Network namespace name (under `/var/run/netns`).
    pub netns: String,
    /// Host end of the veth pair.
    pub host_veth: String,
    /// Host address (the sandbox's gateway).
    pub host_ip: Ipv4Addr,
    /// The sandbox's address.
    pub sandbox_ip: Ipv4Addr,
}

impl SandboxNet {
    /// Path of the network namespace, as runc's config wants it.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(netlink::NETNS_DIR).join(&self.netns)
    }
}

impl Network {
    /// Plumbing for instance `tag` in `subnet`.
    pub fn new(tag: &str, subnet: Subnet) -> Self {
        Self {
            tag: tag.to_string(),
            subnet,
            restricted: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The subnet sandboxes get their addresses from.
    pub fn subnet(&self) -> &Subnet {
        &self.subnet
    }

    fn netns_prefix(&self) -> String {
        format!("alcove-{}-", self.tag)
    }

    fn veth_prefix(&self) -> String {
        format!("av{}", self.tag)
    }

    /// Names and addresses of the sandbox in `slot`.
    pub fn describe(&self, slot: Slot) -> SandboxNet {
        let (host_ip, sandbox_ip) = self.subnet.pair(slot);
        SandboxNet {
            slot,
            netns: format!("{}{}", self.netns_prefix(), slot.0),
            host_veth: format!("{}{:x}", self.veth_prefix(), slot.0),
            host_ip,
            sandbox_ip,
        }
    }

    /// Fails when the host already routes part of the subnet through a link
    /// that is not one of this instance's veths (another server's sandboxes,
    /// a network of the host): see [`overlap`].
    pub fn check_subnet_is_free(&self) -> Result<()> {
        let path = "/proc/net/route";
        let table = std::fs::read_to_string(path)
            .map_err(crate::error::RuntimeError::io("reading", path))?;
        let foreign = overlap::foreign_routes(&self.subnet, &self.veth_prefix(), &table);
        if foreign.is_empty() {
            return Ok(());
        }
        Err(crate::error::RuntimeError::Config(format!(
            "subnet {} overlaps what the host already routes ({}): another Alcove server's \
             sandboxes or a network of this host; choose another --subnet",
            self.subnet,
            foreign.join(", ")
        )))
    }

    /// Installs (or replaces) the instance's nftables table: NAT out, no
    /// sandbox-to-sandbox or sandbox-to-host traffic, no link-local metadata.
    pub async fn install_firewall(&self) -> Result<()> {
        // NAT needs forwarding; it is host-wide, so it is switched on and never off.
        let forward = "/proc/sys/net/ipv4/ip_forward";
        if std::fs::read_to_string(forward)
            .map(|v| v.trim() != "1")
            .unwrap_or(true)
        {
            std::fs::write(forward, "1")
                .map_err(crate::error::RuntimeError::io("writing", forward))?;
        }
        let script = nft::ruleset(&self.tag, &self.subnet.to_string(), &self.veth_prefix());
        cmd::run_with_input(&["nft", "-f", "-"], Some(&script)).await?;
        Ok(())
    }

    /// Removes the instance's nftables table (when no sandbox is left).
    pub async fn remove_firewall(&self) -> Result<()> {
        let script = nft::delete_table(&self.tag);
        cmd::run_with_input(&["nft", "-f", "-"], Some(&script)).await?;
        Ok(())
    }

    /// Clears what a crashed or suspended run of `slot` may have left (its
    /// namespace name, its host veth) before a container is started or
    /// restored there; the slot is then plumbed anew (see [`attach_blocking`]).
    /// Returns the slot's names and addresses.
    pub async fn prepare(&self, slot: Slot) -> SandboxNet {
        let net = self.describe(slot);
        // Its egress rules cannot be left over: the table is rebuilt at each start.
        self.destroy_links(&net).await;
        net
    }

    /// Names the network namespace of the container whose init is `pid`
    /// (`/var/run/netns/<name>`, in the calling thread's mount namespace: the
    /// host's), replacing a stale name. Done once runc has started or restored
    /// the container and its namespace is plumbed.
    pub fn name(&self, net: &SandboxNet, pid: i32) -> Result<()> {
        netlink::unname_netns(&net.netns)?;
        netlink::name_netns(&net.netns, Path::new(&format!("/proc/{pid}/ns/net")))
    }

    /// Enforces `policy` on the sandbox's outbound traffic (replacing any earlier
    /// one); an open policy just removes the rules.
    pub async fn apply_egress(&self, net: &SandboxNet, policy: &EgressPolicy) -> Result<()> {
        self.remove_egress(net).await;
        if policy.is_open() {
            return Ok(());
        }
        let script = nft::egress_rules(&self.tag, &net.host_veth, net.slot.0, policy);
        cmd::run_with_input(&["nft", "-f", "-"], Some(&script)).await?;
        self.restricted_slots().insert(net.slot.0);
        Ok(())
    }

    /// Removes the sandbox's egress rules, if it has any.
    pub async fn remove_egress(&self, net: &SandboxNet) {
        if !self.restricted_slots().remove(&net.slot.0) {
            return;
        }
        for script in nft::egress_removal(&self.tag, &net.host_veth, net.slot.0) {
            let _ = cmd::run_with_input(&["nft", "-f", "-"], Some(&script)).await;
        }
    }

    fn restricted_slots(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u32>> {
        self.restricted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the sandbox's namespace exists.
    pub fn exists(&self, net: &SandboxNet) -> bool {
        net.netns_path().exists()
    }

    /// Deletes the namespace's name (the namespace itself dies with the last
    /// process in it; its veth pair goes with it) and the sandbox's egress
    /// rules. Never fails: what is already gone is fine, and anything else is
    /// logged.
    pub async fn destroy(&self, net: &SandboxNet) {
        self.remove_egress(net).await;
        self.destroy_links(net).await;
    }

    async fn destroy_links(&self, net: &SandboxNet) {
        if let Err(e) = netlink::unname_netns(&net.netns) {
            tracing::warn!(error = %e, netns = %net.netns, "deleting network namespace");
        }
        // A host veth whose namespace vanished some other way.
        if std::path::Path::new("/sys/class/net")
            .join(&net.host_veth)
            .exists()
            && let Err(e) = netlink::delete_link(&net.host_veth).await
        {
            tracing::warn!(error = %e, veth = %net.host_veth, "deleting host veth");
        }
    }

    /// Namespaces of this instance that exist now, by slot.
    pub fn list_slots(&self) -> Vec<Slot> {
        let prefix = self.netns_prefix();
        let Ok(entries) = std::fs::read_dir(netlink::NETNS_DIR) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix(&prefix)?.parse().ok().map(Slot)
            })
            .collect()
    }

    /// Host veths of this instance that exist now, by slot (orphans whose netns is gone).
    pub fn list_veth_slots(&self) -> Vec<Slot> {
        let prefix = self.veth_prefix();
        let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                u32::from_str_radix(name.strip_prefix(&prefix)?, 16)
                    .ok()
                    .map(Slot)
            })
            .collect()
    }
}

/// Plumbs the network of the container whose init is `pid` (run by the
/// container's hook, a short-lived single-threaded process: blocking calls).
pub fn attach_blocking(net: &SandboxNet, prefix: u8, pid: i32) -> Result<()> {
    netlink::attach_blocking(net, prefix, pid)
}
