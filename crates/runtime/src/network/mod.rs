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

/// What the host end of every Alcove server's veths is named with (then the instance's tag
/// and the slot).
const VETH_PREFIX: &str = "av";

/// Host-side network plumbing of one runtime instance.
#[derive(Debug)]
pub struct Network {
    tag: String,
    subnet: Subnet,
    /// Slots that have egress rules now (the table is rebuilt empty at start),
    /// so open policies cost no `nft` call.
    restricted: std::sync::Mutex<std::collections::HashSet<u32>>,
    /// Host veths of removed sandboxes the kernel has yet to remove, each
    /// watched by a task that removes it if the kernel does not (see
    /// [`Network::destroy`]).
    host_ends: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long a removed sandbox's host veth may outlive its namespace before
/// it is deleted here: the kernel takes 5–30 ms; one still there after this
/// is held by something else (a process still in the namespace).
const HOST_END_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

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
            host_ends: std::sync::Mutex::new(Vec::new()),
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
        format!("{VETH_PREFIX}{}", self.tag)
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

    /// Installs (or updates) the instance's nftables table: NAT out, no sandbox-to-sandbox
    /// or sandbox-to-host traffic, no link-local metadata, no forged sources. The egress
    /// rules of sandboxes already there are kept (see [`nft::ruleset`]).
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
        let args = (
            self.tag.as_str(),
            self.subnet.to_string(),
            self.veth_prefix(),
            VETH_PREFIX,
        );
        let kept = nft::ruleset(args.0, &args.1, &args.2, args.3);
        if let Err(e) = cmd::run_with_input(&["nft", "-f", "-"], Some(&kept)).await {
            // A table this build cannot update in place: made anew, without the egress
            // rules of the sandboxes it had (the server applies their policies again).
            tracing::warn!(error = %e, "replacing the firewall table");
            let fresh = nft::fresh_ruleset(args.0, &args.1, &args.2, args.3);
            cmd::run_with_input(&["nft", "-f", "-"], Some(&fresh)).await?;
        }
        // Egress chains kept from before a restart: the server's recovery applies the
        // policies of the sandboxes it adopts, and a slot taken anew clears its own.
        let table = nft::table(&self.tag);
        let listing = cmd::run(&["nft", "list", "table", "inet", &table]).await?;
        *self.restricted_slots() = nft::egress_slots(&listing);
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
        // The table outlives a restart of the server, so the rules of a sandbox it did not
        // adopt can be left in the slot.
        self.remove_egress(&net).await;
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
        if policy.is_open() {
            self.remove_egress(net).await;
            return Ok(());
        }
        // One transaction replaces the chain's rules: removing the old ones first would let
        // the sandbox's packets out between the two.
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
        // Once its namespace is gone the kernel removes the pair itself, after
        // an RCU grace period or two; a delete of ours would wait for the same
        // (20–30 ms of every removal), so the removal does not wait. The host
        // end is watched instead, and deleted if it outlives the grace (a
        // namespace kept alive by a process still in it, or one that vanished
        // some other way). A new sandbox on the same slot removes it first.
        let Some(index) = netlink::host_link_index(&net.host_veth) else {
            return;
        };
        let veth = net.host_veth.clone();
        let watch = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + HOST_END_GRACE;
            while netlink::host_link_index(&veth) == Some(index) {
                if tokio::time::Instant::now() >= deadline {
                    if let Err(e) = netlink::delete_link_index(index).await {
                        tracing::warn!(error = %e, veth = %veth, "deleting host veth");
                    }
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        if let Ok(mut pending) = self.host_ends.lock() {
            pending.retain(|task| !task.is_finished());
            pending.push(watch);
        }
    }

    /// Waits until the host veths of removed sandboxes are gone (at most
    /// [`HOST_END_GRACE`] each), so that a stopped server leaves none.
    pub async fn settle(&self) {
        let pending = match self.host_ends.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        for task in pending {
            let _ = task.await;
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

    /// Slots that have egress rules now (some may be left from before a restart).
    pub fn egress_slots(&self) -> Vec<Slot> {
        self.restricted_slots().iter().copied().map(Slot).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A process in a network namespace of its own, and a veth pair named
    /// `host` on the host with its other end in that namespace.
    fn pair_into_held_namespace(host: &str) -> Child {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net");
        let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let ns = format!("/proc/{}/ns/net", holder.id());
        while std::fs::read_link(&ns).ok().as_ref() == Some(&own) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let made = Command::new("ip")
            .args([
                "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns",
            ])
            .arg(holder.id().to_string())
            .status()
            .expect("ip link add");
        assert!(made.success(), "making the veth pair {host}");
        holder
    }

    fn net(host_veth: &str) -> SandboxNet {
        SandboxNet {
            slot: Slot(1),
            netns: format!("alcove-test-{host_veth}"),
            host_veth: host_veth.into(),
            host_ip: Ipv4Addr::new(10, 254, 0, 1),
            sandbox_ip: Ipv4Addr::new(10, 254, 0, 2),
        }
    }

    /// A network whose removal of the sandbox with host veth `host` has run.
    async fn removed(host: &str) -> Network {
        let network = Network::new("test", "10.254.0.0/16".parse().expect("subnet"));
        network.destroy_links(&net(host)).await;
        network
    }

    fn end(holder: &mut Child) {
        let _ = holder.kill();
        let _ = holder.wait();
    }

    #[tokio::test]
    #[ignore = "needs root (network namespaces, links)"]
    async fn a_host_end_its_namespace_outlives_is_deleted_after_the_grace() {
        // The namespace stays alive (a process is still in it), so the kernel
        // never removes the pair: the removal's watch must.
        let host = format!("avt{:x}", std::process::id() & 0xffff);
        let mut holder = pair_into_held_namespace(&host);
        removed(&host).await.settle().await;
        assert_eq!(
            netlink::host_link_index(&host),
            None,
            "host veth {host} left"
        );
        // Deleting it took the namespace's end too.
        let inside = Command::new("nsenter")
            .arg("--target")
            .arg(holder.id().to_string())
            .args(["--net", "ip", "-o", "link"])
            .output()
            .expect("nsenter ip link");
        let links = String::from_utf8_lossy(&inside.stdout);
        assert!(!links.contains("eth0"), "{links}");
        end(&mut holder);
    }

    #[tokio::test]
    #[ignore = "needs root (network namespaces, links)"]
    async fn a_host_end_is_left_to_the_kernel_once_its_namespace_is_gone() {
        let host = format!("avu{:x}", std::process::id() & 0xffff);
        let mut holder = pair_into_held_namespace(&host);
        let index = netlink::host_link_index(&host).expect("the host end exists");
        end(&mut holder);
        removed(&host).await.settle().await;
        assert_ne!(
            netlink::host_link_index(&host),
            Some(index),
            "host veth {host} left"
        );
    }

    #[tokio::test]
    #[ignore = "needs root (network namespaces, links)"]
    async fn the_watch_never_deletes_a_new_link_of_the_same_name() {
        // A new sandbox on the slot made its own host end under the same name
        // before the old one's grace ran out: that one stays.
        let host = format!("avw{:x}", std::process::id() & 0xffff);
        let mut old = pair_into_held_namespace(&host);
        let network = removed(&host).await;
        let _ = Command::new("ip").args(["link", "del", &host]).status();
        let mut new = pair_into_held_namespace(&host);
        let index = netlink::host_link_index(&host).expect("the new host end exists");
        network.settle().await;
        assert_eq!(
            netlink::host_link_index(&host),
            Some(index),
            "the new {host} was deleted"
        );
        let _ = Command::new("ip").args(["link", "del", &host]).status();
        end(&mut old);
        end(&mut new);
    }
}
