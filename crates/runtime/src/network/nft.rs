//! The nftables ruleset of one runtime instance, as text for `nft -f -`.

/// The table's name for instance `tag`.
pub fn table(tag: &str) -> String {
    format!("alcove_{tag}")
}

/// A script that (re)creates the instance's table atomically.
///
/// * sandboxes reach the outside through masquerade;
/// * traffic from a sandbox to another sandbox, to link-local addresses (cloud
///   metadata) or to the host itself is dropped; replies to connections the host
///   opened (the proxy talking to the agent) pass.
pub fn ruleset(tag: &str, subnet: &str, veth_prefix: &str) -> String {
    let t = table(tag);
    format!(
        "table inet {t} {{}}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} ip daddr != {subnet} masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{veth_prefix}*\" ip daddr {subnet} drop\n\
         \t\tiifname \"{veth_prefix}*\" ip daddr 169.254.0.0/16 drop\n\
         \t\tiifname \"{veth_prefix}*\" ip daddr 127.0.0.0/8 drop\n\
         \t\tiifname vmap @egress\n\
         \t}}\n\
         \tmap egress {{\n\
         \t\ttype ifname : verdict\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{veth_prefix}*\" ct state established,related accept\n\
         \t\tiifname \"{veth_prefix}*\" drop\n\
         \t}}\n\
         }}\n"
    )
}

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
    fn ruleset_is_idempotent_and_scoped_to_the_instance() {
        let r = ruleset("ab12", "10.88.0.0/16", "avab12");
        assert!(r.starts_with("table inet alcove_ab12 {}\ndelete table inet alcove_ab12\n"));
        assert!(r.contains("ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade"));
        assert!(r.contains("iifname \"avab12*\" ip daddr 10.88.0.0/16 drop"));
        assert!(r.contains("iifname \"avab12*\" drop"));
        assert!(r.contains("iifname vmap @egress"));
        assert!(r.contains("type ifname : verdict"));
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
