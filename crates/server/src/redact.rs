//! Keeping host details out of what clients read.
//!
//! The runtime's errors carry what the operator needs: the command line that
//! failed (`runc --root … restore …`), host paths under the data directory,
//! CRIU's output. None of that is for API clients: it maps the host for an
//! attacker. Failures are logged in full (with the request id when there is
//! one) and clients get a short public text instead. The check here is also
//! applied to everything served, so a detailed text stored by older code (or a
//! path not converted yet) is still caught on the way out.

use std::borrow::Cow;
use std::path::Path;
use std::sync::RwLock;

/// Host paths this server uses (data and images directories, binaries):
/// registered at start because the check runs where no configuration is at
/// hand (error bodies, stored records).
static HOST_PATHS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Roots of host paths that never belong in a client-visible text.
const HOST_ROOTS: [&str; 9] = [
    "/var/lib/",
    "/var/cache/",
    "/run/",
    "/sys/fs/",
    "/dev/loop",
    "/usr/local/sbin",
    "/root/",
    "/home/",
    "/proc/self",
];

/// Pieces of the command lines the runtime runs.
const COMMAND_MARKERS: [&str; 14] = [
    "runc ",
    "criu ",
    "--root",
    "--criu",
    "--image-path",
    "--work-path",
    "nft ",
    "ip netns",
    "ip link",
    "ip -batch",
    "network plumbing:",
    "losetup",
    "mkfs.",
    "umount",
];

/// Registers a host path whose appearance in a text marks it as internal.
pub fn register_host_path(path: &Path) {
    let text = path.to_string_lossy().trim_end_matches('/').to_string();
    // "/" or a one-letter path would match everything.
    if text.len() < 2 {
        return;
    }
    let mut paths = HOST_PATHS.write().unwrap_or_else(|p| p.into_inner());
    if !paths.contains(&text) {
        paths.push(text);
    }
}

/// Whether `text` carries a host path or a command line.
pub fn leaks_host_detail(text: &str) -> bool {
    if HOST_ROOTS.iter().any(|root| text.contains(root))
        || COMMAND_MARKERS.iter().any(|m| text.contains(m))
    {
        return true;
    }
    let paths = HOST_PATHS.read().unwrap_or_else(|p| p.into_inner());
    paths.iter().any(|p| text.contains(p.as_str()))
}

/// A failed operation, for its public description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Creating (or restoring into) a sandbox.
    Start,
    /// Suspending a sandbox.
    Suspend,
    /// Resuming a sandbox.
    Resume,
    /// Taking a snapshot.
    Snapshot,
    /// Anything else.
    Other,
}

impl Failure {
    /// The prefix stored texts start with (`resume failed: …`).
    pub fn prefix(self) -> &'static str {
        match self {
            Failure::Start => "start failed",
            Failure::Suspend => "suspend failed",
            Failure::Resume => "resume failed",
            Failure::Snapshot => "snapshot failed",
            Failure::Other => "operation failed",
        }
    }

    /// What a client is told when the detail is internal.
    pub fn public_reason(self) -> &'static str {
        match self {
            Failure::Start => "the sandbox could not be started",
            Failure::Suspend => "the sandbox's processes could not be dumped; it keeps running",
            Failure::Resume => "the sandbox's processes could not be restored; it stays suspended",
            Failure::Snapshot => "the sandbox could not be captured",
            Failure::Other => "the operation failed",
        }
    }

    /// Which failure a stored text describes, from its prefix.
    fn of(text: &str) -> Failure {
        [
            Failure::Start,
            Failure::Suspend,
            Failure::Resume,
            Failure::Snapshot,
        ]
        .into_iter()
        .find(|f| text.starts_with(f.prefix()))
        .unwrap_or(Failure::Other)
    }
}

/// The reason to show for a `failure` whose full detail is `detail`: the detail
/// itself when it is free of host details (e.g. "agent did not become ready
/// within 15 s"), else the failure's public reason.
pub fn public_reason(failure: Failure, detail: &str) -> String {
    if leaks_host_detail(detail) {
        failure.public_reason().to_string()
    } else {
        detail.to_string()
    }
}

/// The text to store in `error_details` for a failure: `"<op> failed: <public reason>"`.
pub fn stored_details(failure: Failure, detail: &str) -> String {
    format!("{}: {}", failure.prefix(), public_reason(failure, detail))
}

/// A stored or built text as a client may see it: unchanged when clean, else
/// the public reason of the failure it describes, with a pointer to the log.
pub fn for_client(text: &str) -> Cow<'_, str> {
    if !leaks_host_detail(text) {
        return Cow::Borrowed(text);
    }
    let failure = Failure::of(text);
    Cow::Owned(format!(
        "{}: {} (details are in the server log)",
        failure.prefix(),
        failure.public_reason()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "running runc --root /var/lib/alcove/runc --criu /usr/local/sbin/criu \
                       restore --image-path /var/lib/alcove/sandboxes/6f1c/checkpoint \
                       --bundle /var/lib/alcove/sandboxes/6f1c/bundle 6f1c: exit status: 1: \
                       criu failed: type RESTORE errno 0";

    #[test]
    fn command_lines_and_host_paths_are_detected() {
        assert!(leaks_host_detail(RAW));
        assert!(leaks_host_detail(
            "creating /var/lib/alcove/sandboxes/x: EEXIST"
        ));
        assert!(leaks_host_detail("runc --root x"));
        assert!(leaks_host_detail(
            "network plumbing: creating veth avab123: File exists"
        ));
        assert!(!leaks_host_detail(
            "agent of sandbox 6f1c did not become ready within 15 s"
        ));
        assert!(!leaks_host_detail(
            "starting entrypoint: agent answered 400 Bad Request: command not found: sleepy"
        ));
        register_host_path(Path::new("/srv/alcove-data/"));
        assert!(leaks_host_detail("reading /srv/alcove-data/alcove.db: EIO"));
        register_host_path(Path::new("/"));
        assert!(!leaks_host_detail("a/b"));
    }

    #[test]
    fn stored_details_keep_clean_reasons_and_hide_internal_ones() {
        let stored = stored_details(Failure::Resume, RAW);
        assert_eq!(
            stored,
            "resume failed: the sandbox's processes could not be restored; it stays suspended"
        );
        assert_eq!(
            stored_details(Failure::Suspend, "the sandbox is suspending"),
            "suspend failed: the sandbox is suspending"
        );
    }

    #[test]
    fn served_texts_are_scrubbed_by_their_failure() {
        let legacy = format!("resume failed: {RAW}");
        let shown = for_client(&legacy);
        assert!(!shown.contains("/var/lib/alcove"), "{shown}");
        assert!(!shown.contains("runc"), "{shown}");
        assert!(shown.starts_with("resume failed: the sandbox's processes could not be restored"));
        let other = for_client(RAW);
        assert!(other.starts_with("operation failed"));
        assert_eq!(for_client("clean text"), "clean text");
    }
}
