//! `alcove serve`'s flags, parsed as the binary parses them, into the
//! server's configuration: defaults, derived values and refusals.

use std::path::PathBuf;

use alcove_server::config::{Config, ConfigError};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

fn parse(args: &[&str]) -> Config {
    let mut argv = vec!["alcove"];
    argv.extend_from_slice(args);
    Cli::parse_from(argv).config
}

#[test]
fn open_bind_needs_keys() {
    let cfg = parse(&["--listen", "0.0.0.0:8900", "--agent-path", "/bin/sh"]);
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::OpenWithoutKeys(_))
    ));
    let cfg = parse(&[
        "--listen",
        "0.0.0.0:8900",
        "--agent-path",
        "/bin/sh",
        "--api-key",
        "k",
    ]);
    assert!(cfg.validate().is_ok());
    let cfg = parse(&["--agent-path", "/bin/sh"]);
    assert!(cfg.validate().is_ok());
}

#[test]
fn defaults_and_derived_values() {
    let cfg = parse(&["--data-dir", "/d"]);
    assert_eq!(cfg.images_dir(), PathBuf::from("/d/images"));
    assert_eq!(
        cfg.sandbox_url("127.0.0.1:1234".parse().expect("addr")),
        "http://localhost:1234"
    );
    let cfg = parse(&["--subnet", "10.1.2.3/16", "--agent-path", "/bin/sh"]);
    assert!(matches!(cfg.validate(), Err(ConfigError::Subnet(_))));
}

#[test]
fn http_limits_have_defaults_and_refuse_zero() {
    let cfg = parse(&["--agent-path", "/bin/sh"]);
    let limits = cfg.http_limits(Some(20_000));
    assert_eq!(limits.header_read_timeout.as_secs(), 10);
    assert_eq!(limits.idle_timeout.as_secs(), 60);
    assert_eq!(limits.max_connections, 4096);
    assert_eq!(limits.max_requests_per_client, 256);
    // A low open-files limit lowers the default cap, keeping 512 descriptors spare.
    assert_eq!(cfg.http_limits(Some(1024)).max_connections, 512);

    let cfg = parse(&[
        "--agent-path",
        "/bin/sh",
        "--max-connections",
        "10",
        "--max-requests-per-client",
        "3",
        "--header-read-timeout-secs",
        "2",
        "--idle-timeout-secs",
        "5",
    ]);
    let limits = cfg.http_limits(Some(20_000));
    assert_eq!(limits.max_connections, 10);
    assert_eq!(limits.max_requests_per_client, 3);
    assert_eq!(limits.header_read_timeout.as_secs(), 2);
    assert_eq!(limits.idle_timeout.as_secs(), 5);

    for flag in [
        "--max-connections",
        "--max-requests-per-client",
        "--header-read-timeout-secs",
        "--idle-timeout-secs",
    ] {
        let cfg = parse(&["--agent-path", "/bin/sh", flag, "0"]);
        assert!(
            matches!(cfg.validate(), Err(ConfigError::ZeroLimit(_))),
            "{flag} 0 must be refused"
        );
    }
}

#[test]
fn archive_ttl_defaults_to_seven_days_and_takes_seconds_or_a_unit() {
    use std::time::Duration;
    let ttl = |value: &str| parse(&["--archive-ttl", value]).archive_ttl;
    assert_eq!(parse(&[]).archive_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(ttl("3"), Duration::from_secs(3));
    assert_eq!(ttl("90s"), Duration::from_secs(90));
    assert_eq!(ttl("30m"), Duration::from_secs(30 * 60));
    assert_eq!(ttl("12h"), Duration::from_secs(12 * 3_600));
    assert_eq!(ttl("7d"), Duration::from_secs(7 * 86_400));
    for bad in [
        "0",
        "0d",
        "",
        "d",
        "1w",
        "1.5h",
        "-1",
        "7 d",
        "1h30m",
        "99999999999d",
    ] {
        assert!(
            Cli::try_parse_from(["alcove", "--archive-ttl", bad]).is_err(),
            "--archive-ttl {bad:?} must be refused"
        );
    }
}
