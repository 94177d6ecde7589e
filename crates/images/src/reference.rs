//! Image references as people write them: `name[:tag][@sha256:…]`, where a
//! name may start with a registry host (`localhost:5000/busybox`).
//!
//! The store's index keys an image by `name:tag` exactly as written (a
//! missing tag is `latest`); no default registry is added, so `alcove/debian`
//! stays a local name. Only a pull decides what a name means on the network.

use std::fmt;

use crate::digest::Digest;
use crate::error::ImageStoreError;

/// The longest reference accepted (Docker's limit on a name is 255).
pub const MAX_REFERENCE_LEN: usize = 512;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Repository, with the registry host if one was written (lowercase).
    pub name: String,
    /// Tag (`latest` when neither tag nor digest was written).
    pub tag: Option<String>,
    /// Pinned manifest digest.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and validates a reference.
    pub fn parse(text: &str) -> Result<Self, ImageStoreError> {
        let bad = |reason: &str| ImageStoreError::BadReference {
            reference: text.chars().take(MAX_REFERENCE_LEN).collect(),
            reason: reason.to_string(),
        };
        if text.is_empty() || text.len() > MAX_REFERENCE_LEN {
            return Err(bad("must be 1 to 512 characters"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| bad("the part after @ must be sha256:<64 hex digits>"))?,
                ),
            ),
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':'
        // before it belongs to a registry port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].find(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad(
                    "a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        check_name(name).map_err(|r| bad(&r))?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            name: name.to_string(),
            tag,
            digest,
        })
    }

    /// The key of the reference index: `name:tag`, or `name@digest` for a
    /// reference pinned by digest only.
    pub fn key(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}:{t}", self.name),
            (None, Some(d)) => format!("{}@{d}", self.name),
            (None, None) => format!("{}:latest", self.name),
        }
    }

    /// The registry host (with port) if the name starts with one: the first
    /// component contains a `.` or a `:` or is `localhost`.
    pub fn registry(&self) -> Option<&str> {
        let (first, rest) = self.name.split_once('/')?;
        (!rest.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost"))
            .then_some(first)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A repository name: `/`-separated components of lowercase letters, digits
/// and single separators (`.`, `_`, `__`, `-`), the first of which may be a
/// registry `host[:port]`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let mut parts = name.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let is_host = first
            && parts.peek().is_some()
            && (part.contains('.') || part.contains(':') || part == "localhost");
        first = false;
        if is_host {
            let (host, port) = match part.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (part, None),
            };
            // `..` or `.x` is a path trick, not a host.
            let host_ok = host
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            let port_ok = port.is_none_or(|p| {
                !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
            });
            if !host_ok || !port_ok {
                return Err(format!("{part:?} is not a registry host[:port]"));
            }
            continue;
        }
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && part
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "component {part:?} must be lowercase letters, digits and . _ - inside"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_tags_hosts_and_digests() {
        let r = ImageRef::parse("alcove/debian").expect("parse");
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.registry()),
            ("alcove/debian", Some("latest"), None)
        );
        assert_eq!(r.key(), "alcove/debian:latest");
        let r = ImageRef::parse("localhost:5000/tools/busybox:1.36").expect("parse");
        assert_eq!(r.registry(), Some("localhost:5000"));
        assert_eq!(r.key(), "localhost:5000/tools/busybox:1.36");
        let d = Digest::of(b"x");
        let r = ImageRef::parse(&format!("127.0.0.1:5000/busybox@{d}")).expect("parse");
        assert_eq!((r.tag.as_deref(), r.digest.as_ref()), (None, Some(&d)));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/busybox@{d}"));
    }

    #[test]
    fn refuses_what_cannot_be_a_reference() {
        for bad in [
            "",
            "Upper/case",
            "a//b",
            "../x",
            "a/../b",
            "x:",
            "x:-t",
            "x@sha256:zz",
            "/abs",
            "a b",
            "host:99999999/x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
