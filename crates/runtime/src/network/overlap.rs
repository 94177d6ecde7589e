//! Refusing a subnet that something else on the host already routes.
//!
//! Two servers given overlapping subnets (two data directories, a copied
//! configuration) would each route their sandboxes' /30 blocks through their
//! own veths, and the host would send one server's traffic to whichever route
//! it finds first: an API call, a proxied connection or a tunnel could reach
//! the other server's sandbox. So a server does not start while the host has a
//! route inside its subnet on a link that is not its own.

use std::net::Ipv4Addr;

use super::Subnet;

/// One IPv4 route of the host's main table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    link: String,
    destination: u32,
    prefix_len: u8,
}

/// The routes of `/proc/net/route`'s text (a header, then one line per route;
/// destination and mask as the kernel's hexadecimal of the network-order word).
fn parse_routes(table: &str) -> Vec<Route> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (link, destination, mask) = (fields.first()?, fields.get(1)?, fields.get(7)?);
            let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_le_bytes);
            let destination = u32::from(Ipv4Addr::from(word(destination)?));
            let mask = u32::from(Ipv4Addr::from(word(mask)?));
            Some(Route {
                link: (*link).to_string(),
                destination,
                prefix_len: u8::try_from(mask.count_ones()).ok()?,
            })
        })
        .collect()
}

/// The routes of `table` (`/proc/net/route`'s text) that lie inside `subnet`
/// (as narrow as it or narrower) on links whose name does not start with
/// `own_links`, as `"<destination>/<length> on <link>"`. A wider route that
/// holds the subnet (a default route, a VPN's 10.0.0.0/8) is no conflict: the
/// sandboxes' /30 routes are narrower and win.
pub(super) fn foreign_routes(subnet: &Subnet, own_links: &str, table: &str) -> Vec<String> {
    parse_routes(table)
        .into_iter()
        .filter(|r| !r.link.starts_with(own_links))
        .filter(|r| subnet.holds(r.destination, r.prefix_len))
        .map(|r| {
            format!(
                "{}/{} on {}",
                Ipv4Addr::from(r.destination),
                r.prefix_len,
                r.link
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
tun0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
avab12\t0440580A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0
avcd3\t0840580A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0
";

    #[test]
    fn routes_parse_in_network_order() {
        let routes = parse_routes(TABLE);
        assert_eq!(routes.len(), 5);
        assert_eq!(routes[1].link, "eth0");
        assert_eq!(
            Ipv4Addr::from(routes[1].destination),
            Ipv4Addr::new(192, 168, 0, 0)
        );
        assert_eq!(routes[1].prefix_len, 24);
        assert_eq!(
            Ipv4Addr::from(routes[3].destination),
            Ipv4Addr::new(10, 88, 64, 4)
        );
        assert_eq!(routes[3].prefix_len, 30);
        assert!(parse_routes("header only\n").is_empty());
        assert!(parse_routes("h\nbroken line\n").is_empty());
    }

    #[test]
    fn only_narrower_foreign_routes_inside_the_subnet_conflict() {
        let subnet: Subnet = "10.88.64.0/18".parse().expect("subnet");
        // The default route and 10.0.0.0/8 hold the subnet: no conflict. avab12 is ours.
        assert_eq!(
            foreign_routes(&subnet, "avab", TABLE),
            vec!["10.88.64.8/30 on avcd3".to_string()]
        );
        // Another instance's prefix: both /30s are foreign.
        assert_eq!(foreign_routes(&subnet, "avzz", TABLE).len(), 2);
        let elsewhere: Subnet = "10.99.0.0/16".parse().expect("subnet");
        assert!(foreign_routes(&elsewhere, "avzz", TABLE).is_empty());
    }
}
