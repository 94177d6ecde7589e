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
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{veth_prefix}*\" ct state established,related accept\n\
         \t\tiifname \"{veth_prefix}*\" drop\n\
         \t}}\n\
         }}\n"
    )
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
    }
}
