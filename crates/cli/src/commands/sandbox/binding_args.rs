//! What a sandbox is given when it is made or claimed from a pool: its outbound network policy
//! and the volumes mounted in it (`create`, `pool create`, `pool claim`).

use alcove_client::wire::file_system::FileSystemMount;
use alcove_client::wire::sandbox::NetworkConfig;

/// Outbound network policy. The server checks the addresses (a bad one is a 400 naming it).
#[derive(Debug, Default, clap::Args)]
pub struct NetworkArgs {
    /// No outbound network access, except to the --allow-out destinations.
    #[arg(long)]
    pub no_internet: bool,
    /// A destination reachable even with --no-internet: an IP address, a CIDR or a host name
    /// (repeatable).
    #[arg(long = "allow-out", value_name = "ADDRESS")]
    pub allow_out: Vec<String>,
    /// A destination never reachable: an IP address, a CIDR or a host name (repeatable; wins
    /// over --allow-out).
    #[arg(long = "deny-out", value_name = "ADDRESS")]
    pub deny_out: Vec<String>,
}

impl NetworkArgs {
    /// The policy these flags ask for; `None` when none was given, which leaves the server's
    /// default (open, or a pool's own policy at a claim).
    pub fn policy(self) -> Option<NetworkConfig> {
        if !self.no_internet && self.allow_out.is_empty() && self.deny_out.is_empty() {
            return None;
        }
        Some(NetworkConfig {
            allow_internet_access: !self.no_internet,
            allow_out: self.allow_out,
            deny_out: self.deny_out,
        })
    }

    /// [`Self::policy`] as the raw JSON that requests able to clear a policy carry (a pool's,
    /// a sandbox's `PATCH`).
    pub fn policy_json(self) -> serde_json::Result<Option<serde_json::Value>> {
        self.policy().map(serde_json::to_value).transpose()
    }
}

/// Volumes to mount.
#[derive(Debug, Default, clap::Args)]
pub struct VolumeArgs {
    /// Mount a volume (made with `alcove volume create`): NAME:PATH, or NAME:PATH:ro read-only
    /// (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "NAME:PATH[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<FileSystemMount>,
}

impl VolumeArgs {
    /// The mounts, `None` when there are none (nothing sent).
    pub fn mounts(self) -> Option<Vec<FileSystemMount>> {
        (!self.volumes.is_empty()).then_some(self.volumes)
    }
}

/// `NAME:PATH`, `NAME:PATH:ro` or `NAME:PATH:rw` → a mount. The path must be absolute; what
/// else it may be (not over `/proc`, …) the server decides, as for the SDKs.
pub fn parse_volume(text: &str) -> Result<FileSystemMount, String> {
    let usage = || format!("{text:?} is not NAME:PATH or NAME:PATH:ro");
    let (name, rest) = text.split_once(':').ok_or_else(usage)?;
    let (path, read_only) = match rest.rsplit_once(':') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        _ => (rest, false),
    };
    if name.is_empty() || path.is_empty() {
        return Err(usage());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{text:?}: the mount path {path:?} must be absolute"
        ));
    }
    Ok(FileSystemMount {
        file_system_id: name.to_string(),
        mount_path: path.to_string(),
        read_only,
        prefetch: None,
        snapshot_id: None,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_take_a_name_a_path_and_an_optional_mode() {
        let rw = parse_volume("data:/mnt/data").expect("rw");
        assert_eq!(
            (
                rw.file_system_id.as_str(),
                rw.mount_path.as_str(),
                rw.read_only
            ),
            ("data", "/mnt/data", false)
        );
        let ro = parse_volume("data:/mnt/data:ro").expect("ro");
        assert_eq!((ro.mount_path.as_str(), ro.read_only), ("/mnt/data", true));
        let explicit = parse_volume("data:/mnt/data:rw").expect("explicit rw");
        assert!(!explicit.read_only);
        // A colon inside the path stays in it unless it ends the path as a mode.
        let colon = parse_volume("data:/mnt/a:b").expect("colon in path");
        assert_eq!(
            (colon.mount_path.as_str(), colon.read_only),
            ("/mnt/a:b", false)
        );
        for bad in [
            "data",
            ":/mnt",
            "data:",
            "data:mnt",
            "data::ro",
            "data:relative:ro",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn no_network_flag_leaves_the_policy_alone() {
        assert_eq!(NetworkArgs::default().policy(), None);
        let closed = NetworkArgs {
            no_internet: true,
            allow_out: vec!["10.1.2.3".into()],
            deny_out: Vec::new(),
        }
        .policy()
        .expect("a policy");
        assert!(!closed.allow_internet_access);
        assert_eq!(closed.allow_out, ["10.1.2.3"]);
        let open_but = NetworkArgs {
            deny_out: vec!["10.0.0.0/8".into()],
            ..NetworkArgs::default()
        }
        .policy()
        .expect("a policy");
        assert!(open_but.allow_internet_access);
        assert_eq!(open_but.deny_out, ["10.0.0.0/8"]);
    }
}
