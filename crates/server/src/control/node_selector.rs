//! Node selectors: the labels (`--node-label key=value`) a sandbox's node must have.
//!
//! A sandbox created with `node_selector` is placed, resumed elsewhere, copied and moved only
//! to nodes whose labels include every pair of it. The selector is stored with the sandbox, so
//! it holds for the sandbox's whole life, not just its first placement.

use std::collections::BTreeMap;

use super::ControlError;

/// Most pairs a selector may hold.
const MAX_PAIRS: usize = 16;

/// Longest label value.
const MAX_VALUE_BYTES: usize = 253;

/// Checks a selector's pairs: keys as node label keys (1 to 63 letters, digits, '-', '_' or
/// '.', starting with a letter or digit), values of at most 253 bytes without control
/// characters, and at most 16 pairs.
pub fn validate(selector: &BTreeMap<String, String>) -> Result<(), ControlError> {
    let invalid = |reason: String| ControlError::InvalidArgument {
        field: "node_selector",
        reason,
    };
    if selector.len() > MAX_PAIRS {
        return Err(invalid(format!(
            "at most {MAX_PAIRS} labels, not {}",
            selector.len()
        )));
    }
    for (key, value) in selector {
        if !is_label_key(key) {
            return Err(invalid(format!(
                "label key {key:?}: 1 to 63 letters, digits, '-', '_' or '.', starting with a \
                 letter or digit"
            )));
        }
        if !is_label_value(value) {
            return Err(invalid(format!(
                "label {key:?}: the value must be at most {MAX_VALUE_BYTES} bytes without \
                 control characters"
            )));
        }
    }
    Ok(())
}

/// Whether `key` may name a label (or a node): 1 to 63 letters, digits, '-', '_' or '.',
/// starting with a letter or digit. The rule of `--node-label` keys and `--node-name` too.
pub fn is_label_key(key: &str) -> bool {
    (1..=63).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `value` may be a label's value: at most 253 bytes, no control characters.
pub fn is_label_value(value: &str) -> bool {
    value.len() <= MAX_VALUE_BYTES && !value.chars().any(char::is_control)
}

/// Whether a node with `labels` may hold a sandbox with `selector`.
pub fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// `key=value, …`, for messages (`none` when empty).
pub fn describe(pairs: &BTreeMap<String, String>) -> String {
    if pairs.is_empty() {
        return "none".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_node_matches_when_it_has_every_pair() {
        let labels = map(&[("gpu", "a100"), ("zone", "b")]);
        assert!(matches(&map(&[]), &labels));
        assert!(matches(&map(&[("zone", "b")]), &labels));
        assert!(matches(&map(&[("gpu", "a100"), ("zone", "b")]), &labels));
        assert!(!matches(&map(&[("zone", "a")]), &labels));
        assert!(!matches(&map(&[("zone", "b"), ("ssd", "yes")]), &labels));
        assert!(!matches(&map(&[("zone", "b")]), &map(&[])));
        assert_eq!(describe(&labels), "gpu=a100, zone=b");
        assert_eq!(describe(&map(&[])), "none");
    }

    #[test]
    fn bad_selectors_name_the_field() {
        assert!(validate(&map(&[("zone", "b"), ("k.8-s_x", "")])).is_ok());
        let long = "x".repeat(64);
        let many: BTreeMap<String, String> =
            (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        for bad in [
            map(&[("", "v")]),
            map(&[("-zone", "v")]),
            map(&[("zo ne", "v")]),
            map(&[(long.as_str(), "v")]),
            map(&[("zone", "a\nb")]),
            map(&[("zone", &"v".repeat(254))]),
            many,
        ] {
            match validate(&bad) {
                Err(ControlError::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "node_selector")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
