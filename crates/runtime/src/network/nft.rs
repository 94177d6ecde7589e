//! The nftables ruleset of one runtime instance, as text for `nft -f -`.

/// The table's name for instance `tag`.
pub fn table(tag: &str) -> String {
    format!("alcove_{tag}")
}

/// A script that installs the instance's base chains and their rules in one transaction,
/// keeping the `egress` map and the sandboxes' chains of a table that exists already (a
/// restart of the server: the sandboxes it adopts stay under their policies meanwhile).
///
/// * sandboxes reach the outside through masquerade;
/// * traffic from a sandbox to another sandbox (of this server or of any other Alcove server
///   on the host: each table sees only its own subnet, so `any_veth` covers the others), to
///   link-local addresses (cloud metadata) or to the host itself is dropped; replies to
///   connections the host opened (the proxy talking to the agent) pass;
/// * a packet whose source address is not one its veth routes back to (a forged source:
///   another sandbox's, or any address outside its /30) is dropped, before masquerade could
///   send it out under the host's address or deliver the replies to another sandbox;
/// * a sandbox opens at most [`MAX_FLOWS_PER_SANDBOX`] connections (flows) at a time: each
///   is an entry of the host's connection-tracking table, which every sandbox and the host
///   share, and a full table drops new connections of all of them.
pub fn ruleset(tag: &str, subnet: &str, veth_prefix: &str, any_veth: &str) -> String {
    let t = table(tag);
    let from = format!("iifname \"{veth_prefix}*\"");
    format!(
        "add table inet {t}\n\
         add chain inet {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain inet {t} postrouting\n\
         add rule inet {t} postrouting ip saddr {subnet} ip daddr != {subnet} masquerade\n\
         add map inet {t} egress {{ type ifname : verdict; }}\n\
         add chain inet {t} forward {{ type filter hook forward priority filter; policy accept; }}\n\
         flush chain inet {t} forward\n\
         add rule inet {t} forward {from} fib saddr . iif oif missing drop\n\
         add rule inet {t} forward {from} oifname \"{any_veth}*\" drop\n\
         add rule inet {t} forward {from} ip daddr {subnet} drop\n\
         add rule inet {t} forward {from} ip daddr 169.254.0.0/16 drop\n\
         add rule inet {t} forward {from} ip daddr 127.0.0.0/8 drop\n\
         add set inet {t} flows {{ type ipv4_addr; flags dynamic; size 65536; }}\n\
         add rule inet {t} forward {from} ct state new add @flows {{ ip saddr ct count over {MAX_FLOWS_PER_SANDBOX} }} drop\n\
         add rule inet {t} forward iifname vmap @egress\n\
         add chain inet {t} input {{ type filter hook input priority filter; policy accept; }}\n\
         flush chain inet {t} input\n\
         add rule inet {t} input {from} ct state established,related accept\n\
         add rule inet {t} input {from} drop\n"
    )
}

/// [`ruleset`] on a new table: whatever table there was is deleted first (when the one
/// there cannot be updated in place, e.g. base chains of another shape).
pub fn fresh_ruleset(tag: &str, subnet: &str, veth_prefix: &str, any_veth: &str) -> String {
    let t = table(tag);
    format!(
        "table inet {t} {{}}\ndelete table inet {t}\n{}",
        ruleset(tag, subnet, veth_prefix, any_veth)
    )
}

/// The slots whose egress chains a listing of the table (`nft list table`) shows.
pub fn egress_slots(listing: &str) -> std::collections::HashSet<u32> {
    listing
        .split("egress_")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Connections (tracked flows) one sandbox may have open at a time.
pub const MAX_FLOWS_PER_SANDBOX: u32 = 16384;

/// An outbound policy, with every destination already an IPv4 address or CIDR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Whether destinations not listed are reachable.
    pub allow_internet: bool,
    /// Reachable even when `allow_internet` is false.
    pub allow: Vec<String>,
    /// Never reachable (wins over `allow`).
    pub deny: Vec<String>,
}

impl EgressPolicy {
    /// Whether this is the default (everything allowed): no rules needed.
    pub fn is_open(&self) -> bool {
        self.allow_internet && self.deny.is_empty()
    }
}

/// The chain holding one sandbox's egress rules.
pub fn egress_chain(slot: u32) -> String {
    format!("egress_{slot}")
}

/// A script that (re)writes the egress chain of the sandbox behind `veth` and
/// points the `egress` map at it.
pub fn egress_rules(tag: &str, veth: &str, slot: u32, policy: &EgressPolicy) -> String {
    let t = table(tag);
    let chain = egress_chain(slot);
    let mut script = format!("add chain inet {t} {chain}\nflush chain inet {t} {chain}\n");
    if !policy.deny.is_empty() {
        script += &format!(
            "add rule inet {t} {chain} ip daddr {{ {} }} drop\n",
            policy.deny.join(", ")
        );
    }
    if !policy.allow_internet {
        if !policy.allow.is_empty() {
            script += &format!(
                "add rule inet {t} {chain} ip daddr {{ {} }} accept\n",
                policy.allow.join(", ")
            );
        }
        script += &format!("add rule inet {t} {chain} drop\n");
    }
    script += &format!("add element inet {t} egress {{ \"{veth}\" : jump {chain} }}\n");
    script
}

/// Scripts that detach and delete a sandbox's egress chain (run separately: either
/// may already be gone).
pub fn egress_removal(tag: &str, veth: &str, slot: u32) -> [String; 2] {
    let t = table(tag);
    [
        format!("delete element inet {t} egress {{ \"{veth}\" }}\n"),
        format!("delete chain inet {t} {}\n", egress_chain(slot)),
    ]
}

/// A script that removes the instance's table if it exists.
pub fn delete_table(tag: &str) -> String {
    let t = table(tag);
    format!("table inet {t} {{}}\ndelete table inet {t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_keeps_the_egress_state_and_is_scoped_to_the_instance() {
        let r = ruleset("ab12", "10.88.0.0/16", "avab12", "av");
        assert!(!r.contains("delete"), "{r}");
        assert!(r.starts_with("add table inet alcove_ab12\n"));
        assert!(r.contains("ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade"));
        assert!(r.contains("iifname \"avab12*\" ip daddr 10.88.0.0/16 drop"));
        assert!(r.contains("input iifname \"avab12*\" drop"));
        assert!(r.contains("iifname \"avab12*\" oifname \"av*\" drop"));
        assert!(r.contains("iifname \"avab12*\" fib saddr . iif oif missing drop"));
        assert!(r.contains("iifname vmap @egress"));
        assert!(r.contains("type ifname : verdict"));
        let limit = r
            .find("ip saddr ct count over 16384 } drop")
            .expect("flows limit");
        assert!(limit < r.find("vmap @egress").expect("egress"), "{r}");
        let fresh = fresh_ruleset("ab12", "10.88.0.0/16", "avab12", "av");
        assert!(fresh.starts_with("table inet alcove_ab12 {}\ndelete table inet alcove_ab12\n"));
        assert!(fresh.ends_with(&r));
    }

    #[test]
    fn egress_slots_are_read_from_a_listing() {
        let listing = "table inet alcove_ab12 {\n\tmap egress {\n\t\ttype ifname : verdict\n\
                       \t\telements = { \"avab125\" : jump egress_5, \"avab12a\" : jump egress_10 }\n\t}\n\
                       \tchain egress_5 {\n\t\tdrop\n\t}\n\tchain egress_10 {\n\t}\n\tchain egress_77 {\n\t}\n}\n";
        let slots = egress_slots(listing);
        assert_eq!(slots, [5, 10, 77].into_iter().collect());
        assert!(egress_slots("table inet alcove_ab12 {\n}\n").is_empty());
    }

    #[test]
    fn egress_rules_deny_first_then_allow_then_drop() {
        let policy = EgressPolicy {
            allow_internet: false,
            allow: vec!["10.1.2.3/32".into()],
            deny: vec!["10.9.0.0/16".into()],
        };
        let s = egress_rules("ab12", "avab125", 5, &policy);
        let deny = s.find("ip daddr { 10.9.0.0/16 } drop").expect("deny rule");
        let allow = s
            .find("ip daddr { 10.1.2.3/32 } accept")
            .expect("allow rule");
        let drop_all = s.find("egress_5 drop").expect("final drop");
        assert!(deny < allow && allow < drop_all);
        assert!(s.contains("add element inet alcove_ab12 egress { \"avab125\" : jump egress_5 }"));
        let open = EgressPolicy {
            allow_internet: true,
            ..Default::default()
        };
        assert!(open.is_open());
        assert!(!egress_rules("ab12", "v", 1, &open).contains("drop"));
    }
}
