//! A sandbox's network plumbing made with netlink and a few system calls, in
//! the process that needs it: no `ip` process per step.
//!
//! Spawning `ip` twice per sandbox start cost a few milliseconds each, and
//! `ip -n` also copied the host's whole mount namespace to remount `/sys`,
//! a cost that grew with every sandbox's mounts. What `ip netns attach`,
//! `ip link add … type veth peer … netns …`, `ip addr`, `ip link set up`,
//! `ip route add default` and `ip netns delete` did is done here directly:
//! the namespace is named by a bind mount of `/proc/<pid>/ns/net` under
//! `/var/run/netns` (so the clean-up and the tools still find it; the node
//! does it in the host's mount namespace once runc is done, see
//! [`crate::runc_ns`]), the veth
//! pair is made with its sandbox end created straight inside the namespace,
//! and the inside is configured over a netlink socket opened in that
//! namespace (the calling thread enters it, then returns to its own).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::SandboxNet;
use crate::error::{Result, RuntimeError};

/// Where named network namespaces live (as `ip netns` keeps them).
pub const NETNS_DIR: &str = "/var/run/netns";

/// The name of the sandbox's end of the veth pair, inside its namespace.
const SANDBOX_LINK: &str = "eth0";

fn net_error(what: &str, detail: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Network(format!("{what}: {detail}"))
}

/// Plumbs the network of the container whose init is `pid`: makes the veth pair, addresses both ends, brings them and the
/// loopback up and routes the sandbox's traffic through the host end.
/// Blocking (a single-threaded runtime of its own): meant for the container's
/// short-lived hook process.
pub fn attach_blocking(net: &SandboxNet, prefix: u8, pid: i32) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| net_error("starting the netlink runtime", e))?;
    runtime.block_on(attach(net, prefix, pid))
}

async fn attach(net: &SandboxNet, prefix: u8, pid: i32) -> Result<()> {
    // A host veth left by a run that died without clean-up.
    let host = connect()?;
    delete_link_with(&host, &net.host_veth).await?;

    let ns_path = format!("/proc/{pid}/ns/net");
    let netns = File::open(&ns_path).map_err(RuntimeError::io("opening", &ns_path))?;

    // The pair, its sandbox end made inside the namespace (so that its name
    // never meets the host's own `eth0`).
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(SANDBOX_LINK.to_string())
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let pair = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(net.host_veth.clone())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    host.link()
        .add(pair)
        .execute()
        .await
        .map_err(|e| net_error(&format!("creating veth {}", net.host_veth), e))?;
    let host_index = link_index(&host, &net.host_veth).await?;
    disable_ipv6(&net.host_veth)?;
    host.address()
        .add(host_index, IpAddr::V4(net.host_ip), prefix)
        .execute()
        .await
        .map_err(|e| net_error(&format!("addressing {}", net.host_veth), e))?;
    link_up(&host, host_index, &net.host_veth).await?;

    let inside = in_namespace(&netns, connect)?;
    let eth = link_index(&inside, SANDBOX_LINK).await?;
    inside
        .address()
        .add(eth, IpAddr::V4(net.sandbox_ip), prefix)
        .execute()
        .await
        .map_err(|e| net_error("addressing the sandbox's eth0", e))?;
    let lo = link_index(&inside, "lo").await?;
    link_up(&inside, lo, "lo").await?;
    link_up(&inside, eth, SANDBOX_LINK).await?;
    inside
        .route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(net.host_ip)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| net_error("routing the sandbox through its host end", e))?;
    // A link that was just brought up drops what it sends until the kernel's
    // link watcher has attached its queueing discipline, which it does
    // asynchronously. A connect to the agent in that window loses its SYN and
    // waits a second for the retransmission: wait for both ends instead.
    wait_until_oper_up(&host, host_index, &net.host_veth).await?;
    wait_until_oper_up(&inside, eth, SANDBOX_LINK).await
}

/// Turns IPv6 off on the host's end of a pair before it comes up. Sandboxes
/// are reached over IPv4 only, and an IPv6 link-local address and its routes
/// per veth made every link removal on the host walk the whole IPv6 routing
/// table (`fib6_ifdown`), which grew with every sandbox up. It also keeps
/// sandboxes from reaching the host over IPv6 link-local. A host without
/// IPv6 has no such setting, which is fine.
fn disable_ipv6(link: &str) -> Result<()> {
    match crate::procfs::write_sysctl(&format!("net/ipv6/conf/{link}/disable_ipv6"), "1") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(net_error(&format!("turning IPv6 off on {link}"), e)),
    }
}

/// How long [`wait_until_oper_up`] waits at most (the link watcher usually
/// takes well under a millisecond; a busy host may take longer).
const OPER_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits until link `index` is operationally up (carrier on and, the link
/// watcher having run, its queueing discipline attached).
async fn wait_until_oper_up(handle: &Handle, index: u32, name: &str) -> Result<()> {
    use rtnetlink::packet_route::link::{LinkAttribute, State};
    let deadline = std::time::Instant::now() + OPER_UP_TIMEOUT;
    loop {
        let link = handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(|e| net_error(&format!("looking up link {name}"), e))?;
        let up = link.is_some_and(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
        });
        if up {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            // Not fatal: the agent wait retries its connects.
            tracing::warn!(link = name, "link not operationally up after 500 ms");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
}

/// A netlink connection of the calling thread's network namespace, driven
/// by the current runtime.
fn connect() -> Result<Handle> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| net_error("opening a netlink socket", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Runs `f` with the calling thread inside the network namespace `netns`,
/// then takes the thread back to the namespace it was in (a socket opened by
/// `f` stays in `netns`).
fn in_namespace<T>(netns: &File, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let own = File::open("/proc/thread-self/ns/net")
        .map_err(RuntimeError::io("opening", "/proc/thread-self/ns/net"))?;
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| net_error("entering the sandbox's network namespace", e))?;
    let out = f();
    nix::sched::setns(&own, CloneFlags::CLONE_NEWNET)
        .map_err(|e| net_error("returning to the host's network namespace", e))?;
    out
}

async fn link_index(handle: &Handle, name: &str) -> Result<u32> {
    let link = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|e| net_error(&format!("looking up link {name}"), e))?;
    link.map(|l| l.header.index)
        .ok_or_else(|| net_error("looking up link", format!("{name} does not exist")))
}

async fn link_up(handle: &Handle, index: u32, name: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| net_error(&format!("bringing {name} up"), e))
}

/// Whether a netlink error says the link does not exist.
fn no_such_link(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

async fn delete_link_with(handle: &Handle, name: &str) -> Result<()> {
    match handle
        .link()
        .del_with_message(LinkUnspec::new_with_name(name).build())
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if no_such_link(&e) => Ok(()),
        Err(e) => Err(net_error(&format!("deleting link {name}"), e)),
    }
}

/// The index of the host link `name` now, from sysfs (no netlink socket);
/// `None` when there is no such link.
pub fn host_link_index(name: &str) -> Option<u32> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Deletes the host link with index `index` (a veth takes its peer with it);
/// a link that no longer exists is fine. By index, not name: a link of the
/// same name made since is another sandbox's.
pub async fn delete_link_index(index: u32) -> Result<()> {
    match connect()?.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if no_such_link(&e) => Ok(()),
        Err(e) => Err(net_error(&format!("deleting link {index}"), e)),
    }
}

/// Names the network namespace at `ns` (e.g. `/proc/<pid>/ns/net`) as
/// `NETNS_DIR/name`, as `ip netns attach` does: the directory is made a
/// shared mount (so the name shows in every mount namespace that sees it)
/// and an empty file there is bind-mounted from `ns`.
pub(super) fn name_netns(name: &str, ns: &Path) -> Result<()> {
    check_name(name)?;
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).map_err(RuntimeError::io("creating", dir))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if let Err(nix::errno::Errno::EINVAL) =
        nix::mount::mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
    {
        // Not a mount point yet: make it one, then share it.
        nix::mount::mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| net_error(&format!("bind-mounting {NETNS_DIR} on itself"), e))?;
        nix::mount::mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
            .map_err(|e| net_error(&format!("sharing {NETNS_DIR}"), e))?;
    }
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(RuntimeError::io("creating", &path))?;
    if let Err(e) = nix::mount::mount(
        Some(ns),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(&path);
        return Err(net_error(
            &format!("naming the network namespace {name}"),
            e,
        ));
    }
    Ok(())
}

/// Removes the name `NETNS_DIR/name` (the namespace itself lives on while a
/// process is in it), as `ip netns delete` does; an absent name is fine.
pub fn unname_netns(name: &str) -> Result<()> {
    check_name(name)?;
    let path = Path::new(NETNS_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(net_error(&format!("unmounting {}", path.display()), e)),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("removing", &path)(e)),
    }
}

/// A namespace name is one plain path component.
fn check_name(name: &str) -> Result<()> {
    if !crate::procfs::is_plain_name(name) {
        return Err(net_error(
            "network namespace name",
            format!("{name:?} is not a plain name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_plain() {
        assert!(check_name("alcove-ab12-3").is_ok());
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(unname_netns("../etc").is_err());
    }
}
