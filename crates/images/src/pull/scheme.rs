//! Which registries are spoken to in plain HTTP.
//!
//! As Docker does, a registry on a loopback address (`localhost`,
//! `127.0.0.0/8`, `::1`) needs no configuration: traffic to it never leaves
//! the machine. Any other registry is HTTPS unless the operator lists it as
//! insecure.

use std::net::IpAddr;

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 literal into its host.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    // More than one ':' without brackets can only be a bare IPv6 address.
    if registry.matches(':').count() > 1 {
        return registry;
    }
    registry.split_once(':').map_or(registry, |(host, _)| host)
}

/// Whether `registry` (`host[:port]`) is on a loopback address.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `registry` is spoken to in plain HTTP: it is on a loopback
/// address, or `insecure` lists it (as `host:port`, or as `host` for every
/// port of it; compared without regard to case).
pub(crate) fn plain_http(registry: &str, insecure: &[String]) -> bool {
    if is_loopback(registry) {
        return true;
    }
    let host = host_of(registry);
    insecure
        .iter()
        .any(|entry| entry.eq_ignore_ascii_case(registry) || entry.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http_without_configuration() {
        for registry in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:5000",
            "127.0.0.1:5000",
            "127.8.9.10",
            "[::1]:5000",
            "::1",
        ] {
            assert!(plain_http(registry, &[]), "{registry}");
        }
    }

    #[test]
    fn other_registries_are_https_unless_listed_as_insecure() {
        for registry in [
            "registry.example:5000",
            "10.0.0.1:5000",
            "128.0.0.1",
            "localhost.example",
            "registry.example",
            "[::2]:5000",
        ] {
            assert!(!plain_http(registry, &[]), "{registry}");
        }
        let insecure = vec!["registry.example:5000".to_string(), "10.0.0.1".to_string()];
        assert!(plain_http("registry.example:5000", &insecure));
        assert!(plain_http("Registry.Example:5000", &insecure));
        // A listed port does not open the host's other ports.
        assert!(!plain_http("registry.example:5001", &insecure));
        // A listed host without port covers every port of it.
        assert!(plain_http("10.0.0.1:5000", &insecure));
        assert!(plain_http("10.0.0.1", &insecure));
        assert!(!plain_http("10.0.0.2", &insecure));
    }

    #[test]
    fn only_a_plain_http_registry_is_in_the_clients_exception_list() {
        use oci_client::client::ClientProtocol;

        use crate::pull::PullConfig;

        let config = PullConfig {
            insecure_registries: vec!["registry.example:5000".to_string()],
            ..PullConfig::default()
        };
        for registry in ["127.0.0.1:5000", "localhost:5000", "registry.example:5000"] {
            assert_eq!(
                config.client_config(registry).protocol,
                ClientProtocol::HttpsExcept(vec![registry.to_string()]),
                "{registry}"
            );
        }
        for registry in ["registry.example", "registry.example:5001"] {
            assert_eq!(
                config.client_config(registry).protocol,
                ClientProtocol::Https,
                "{registry}"
            );
        }
    }
}
