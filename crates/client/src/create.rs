//! [`CreateOptions`]: what a new sandbox should be, checked before anything is sent.

use alcove_wire::sandbox::{CreateSandboxRequest, NetworkConfig, ResourcesRequest};

use crate::error::ClientError;

/// The agent's port inside every sandbox; it can never be exposed.
pub const MANAGEMENT_PORT: u16 = 9501;

/// Options of [`crate::SandboxClient::create`]; unset fields take the server's defaults
/// (1 CPU, 1024 MiB, 10240 MiB of disk, the default image, no lifetime limit).
///
/// ```
/// use alcove_client::CreateOptions;
/// let options = CreateOptions::new().name("build-env").cpus(2.0).memory_mb(2048);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    /// Name (a DNS label); `None` for an ephemeral sandbox (named ones can be suspended).
    pub name: Option<String>,
    /// Image name or alias.
    pub image: Option<String>,
    /// CPUs (fractions allowed).
    pub cpus: Option<f64>,
    /// Memory in MiB.
    pub memory_mb: Option<i64>,
    /// Writable-layer size in MiB.
    pub disk_mb: Option<i64>,
    /// Lifetime in seconds (0 = none).
    pub timeout_secs: Option<i64>,
    /// Restore this snapshot instead of booting the image.
    pub snapshot_id: Option<String>,
    /// Secrets (set with `alcove secrets set`) injected as environment variables.
    pub secret_names: Vec<String>,
    /// User ports routed from the ingress.
    pub exposed_ports: Vec<u16>,
    /// Whether exposed ports accept unauthenticated traffic.
    pub allow_unauthenticated_access: bool,
    /// A command started as a background process once the agent is up.
    pub entrypoint: Vec<String>,
    /// Outbound network policy.
    pub network: Option<NetworkConfig>,
    /// Whether proxied traffic wakes the sandbox when suspended (server default: true).
    pub auto_resume: Option<bool>,
    /// Let the server pull `image` from its registry first when its store does not have it
    /// (otherwise an unknown image is a 404).
    pub pull_image: bool,
    /// Volumes mounted when it boots (docs/volumes.md).
    pub file_systems: Vec<alcove_wire::file_system::FileSystemMount>,
    /// Labels its node must have (`--node-label` of the servers; docs/cluster.md).
    pub node_selector: std::collections::BTreeMap<String, String>,
}

impl CreateOptions {
    /// Options with everything left to the server.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options restoring `snapshot_id` (image and resources come from the snapshot).
    pub fn from_snapshot(snapshot_id: impl Into<String>) -> Self {
        Self {
            snapshot_id: Some(snapshot_id.into()),
            ..Self::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the image.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the CPUs.
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Sets the memory in MiB.
    pub fn memory_mb(mut self, memory_mb: i64) -> Self {
        self.memory_mb = Some(memory_mb);
        self
    }

    /// Sets the disk in MiB.
    pub fn disk_mb(mut self, disk_mb: i64) -> Self {
        self.disk_mb = Some(disk_mb);
        self
    }

    /// Sets the lifetime in seconds.
    pub fn timeout_secs(mut self, secs: i64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// Adds a secret.
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.secret_names.push(name.into());
        self
    }

    /// Exposes a user port.
    pub fn expose_port(mut self, port: u16) -> Self {
        self.exposed_ports.push(port);
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = command.into_iter().map(Into::into).collect();
        self
    }

    /// Lets the server pull a missing registry image first (true).
    pub fn pull_image(mut self, pull: bool) -> Self {
        self.pull_image = pull;
        self
    }

    /// Mounts a volume when the sandbox boots (read-only with `read_only`).
    pub fn file_system(mut self, name: &str, mount_path: &str, read_only: bool) -> Self {
        self.file_systems
            .push(alcove_wire::file_system::FileSystemMount {
                file_system_id: name.to_string(),
                mount_path: mount_path.to_string(),
                read_only,
                prefetch: None,
                snapshot_id: None,
                owner: None,
            });
        self
    }

    /// Runs it only on a node labelled `key=value` (repeatable: every label must match).
    pub fn node_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Sets the outbound network policy.
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    /// The request body, after the client-side checks.
    pub fn to_request(&self) -> Result<CreateSandboxRequest, ClientError> {
        if self
            .cpus
            .is_some_and(|cpus| !(cpus.is_finite() && cpus > 0.0))
        {
            return Err(ClientError::invalid("cpus must be a positive number"));
        }
        for (value, what) in [(self.memory_mb, "memory_mb"), (self.disk_mb, "disk_mb")] {
            if value.is_some_and(|v| v <= 0) {
                return Err(ClientError::invalid(format!(
                    "{what} must be a positive integer"
                )));
            }
        }
        if self.timeout_secs.is_some_and(|secs| secs < 0) {
            return Err(ClientError::invalid("timeout_secs must not be negative"));
        }
        for (value, what) in [
            (&self.name, "name"),
            (&self.image, "image"),
            (&self.snapshot_id, "snapshot_id"),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(ClientError::invalid(format!(
                    "{what} must be a non-empty string"
                )));
            }
        }
        let mut ports = validate_ports(&self.exposed_ports)?;
        ports.dedup();
        // A restored memory snapshot keeps its resources: send none unless asked.
        let resources = (self.cpus.is_some() || self.memory_mb.is_some() || self.disk_mb.is_some())
            .then(|| ResourcesRequest {
                cpus: self.cpus,
                memory_mb: self.memory_mb,
                disk_mb: self.disk_mb,
                ..ResourcesRequest::default()
            });
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        Ok(CreateSandboxRequest {
            name: self.name.clone(),
            image: self.image.clone(),
            resources,
            timeout_secs: self.timeout_secs,
            entrypoint: non_empty(&self.entrypoint),
            network: self.network.clone(),
            allow_unauthenticated_access: self.allow_unauthenticated_access.then_some(true),
            exposed_ports: (!ports.is_empty())
                .then(|| ports.iter().map(|p| i64::from(*p)).collect()),
            secret_names: non_empty(&self.secret_names),
            snapshot_id: self.snapshot_id.clone(),
            auto_resume: self.auto_resume,
            pull_image: self.pull_image.then_some(true),
            file_systems: (!self.file_systems.is_empty()).then(|| self.file_systems.clone()),
            node_selector: (!self.node_selector.is_empty()).then(|| self.node_selector.clone()),
            ..CreateSandboxRequest::default()
        })
    }
}

/// Sorted, checked user ports (1-65535, never the agent's).
pub(crate) fn validate_ports(ports: &[u16]) -> Result<Vec<u16>, ClientError> {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    if sorted.first() == Some(&0) {
        return Err(ClientError::invalid("ports must be between 1 and 65535"));
    }
    if sorted.contains(&MANAGEMENT_PORT) {
        return Err(ClientError::invalid(format!(
            "port {MANAGEMENT_PORT} is reserved for the sandbox's agent and cannot be exposed"
        )));
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_set_is_sent() {
        let body =
            serde_json::to_value(CreateOptions::new().to_request().expect("valid")).expect("json");
        let sent: Vec<_> = body
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .collect();
        assert!(sent.is_empty(), "{sent:?}");
        let request = CreateOptions::new()
            .name("a")
            .cpus(2.0)
            .expose_port(8080)
            .expose_port(80)
            .expose_port(8080)
            .secret("TOKEN")
            .to_request()
            .expect("valid");
        assert_eq!(request.exposed_ports, Some(vec![80, 8080]));
        assert_eq!(request.resources.and_then(|r| r.cpus), Some(2.0));
        assert_eq!(request.secret_names, Some(vec!["TOKEN".to_string()]));
        assert_eq!(request.pull_image, None);
        let request = CreateOptions::new()
            .image("localhost:5000/tools/jq:1")
            .pull_image(true)
            .to_request()
            .expect("valid");
        assert_eq!(request.pull_image, Some(true));
        assert_eq!(request.file_systems, None);
        let request = CreateOptions::new()
            .file_system("data", "/mnt/data", true)
            .to_request()
            .expect("request");
        let mounts = request.file_systems.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert!(mounts[0].read_only);
        assert_eq!(mounts[0].mount_path, "/mnt/data");
        assert_eq!(request.node_selector, None);
        let request = CreateOptions::new()
            .node_label("gpu", "a100")
            .node_label("zone", "b")
            .to_request()
            .expect("request");
        let selector = request.node_selector.expect("selector");
        assert_eq!(selector.get("gpu").map(String::as_str), Some("a100"));
        assert_eq!(selector.len(), 2);
    }

    #[test]
    fn a_restore_sends_no_resources_unless_asked() {
        let request = CreateOptions::from_snapshot("snap")
            .to_request()
            .expect("valid");
        assert_eq!(request.snapshot_id.as_deref(), Some("snap"));
        assert!(request.resources.is_none());
    }

    #[test]
    fn bad_options_are_refused() {
        for options in [
            CreateOptions::new().cpus(0.0),
            CreateOptions::new().cpus(f64::NAN),
            CreateOptions::new().memory_mb(0),
            CreateOptions::new().timeout_secs(-1),
            CreateOptions::new().name(" "),
            CreateOptions::new().expose_port(MANAGEMENT_PORT),
            CreateOptions::new().expose_port(0),
        ] {
            assert!(matches!(
                options.to_request(),
                Err(ClientError::InvalidArgument(_))
            ));
        }
    }
}
