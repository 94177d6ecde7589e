//! The capabilities of a sandbox's processes: Docker's default set.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Docker's default capabilities. Notably absent: `SYS_ADMIN`, `NET_ADMIN`,
/// `SYS_PTRACE`, `SYS_MODULE`, `SYS_TIME`, `DAC_READ_SEARCH`.
pub(super) const CAPABILITIES: [Capability; 14] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// Capabilities of a sandbox's processes: Docker's default set in the bounding,
/// effective and permitted sets; the inheritable and ambient sets empty, so
/// nothing survives an `execve` of a file without file capabilities.
pub fn default_capabilities() -> LinuxCapabilities {
    let set: Capabilities = CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(Some(Capabilities::new()))
        .set_ambient(Some(Capabilities::new()));
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_dockers() {
        let caps = default_capabilities();
        let expected: Capabilities = CAPABILITIES.into_iter().collect();
        assert_eq!(expected.len(), 14);
        assert_eq!(caps.bounding().as_ref(), Some(&expected));
        assert_eq!(caps.effective().as_ref(), Some(&expected));
        assert_eq!(caps.permitted().as_ref(), Some(&expected));
        assert_eq!(caps.inheritable().as_ref(), Some(&Capabilities::new()));
        assert_eq!(caps.ambient().as_ref(), Some(&Capabilities::new()));
        for cap in [
            Capability::SysAdmin,
            Capability::NetAdmin,
            Capability::SysPtrace,
            Capability::SysModule,
            Capability::SysTime,
            Capability::DacReadSearch,
            Capability::SysRawio,
        ] {
            assert!(!expected.contains(&cap), "{cap:?}");
        }
        let json = serde_json::to_value(&caps).expect("serialize");
        assert!(
            json["bounding"]
                .as_array()
                .expect("bounding array")
                .contains(&serde_json::json!("CAP_NET_BIND_SERVICE"))
        );
    }
}
