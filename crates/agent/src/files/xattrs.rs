//! The extended attributes a replacement takes over from the file it replaces.
//!
//! A file replaced whole is a new inode, so what the old one carried beside its owner and mode
//! would be lost: its access ACL (`system.posix_acl_access`), which can narrow what the owning
//! group may do, and the user's own attributes (`user.*`). Both are copied to the temporary file
//! before it is renamed into place. The `security.*` ones are not: the kernel drops a file's
//! capabilities (`security.capability`) on any write to it, and new content must not inherit
//! them; labels are the security policy's to give.

use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::{Errno, Result};

/// The access ACL: mode-like, so a copy that fails fails the replacement.
const ACCESS_ACL: &str = "system.posix_acl_access";

/// Gives `to` the access ACL and `user.*` attributes of the file at `from` (a regular file, not
/// a link), and no access ACL when `from` has none (a new file in a directory with a default
/// ACL gets one of its own). A file system without extended attributes has nothing to copy.
pub(super) fn copy_kept(from: &Path, to: impl AsFd) -> Result<()> {
    let names = match list(from) {
        Ok(names) => names,
        Err(Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut had_acl = false;
    for name in names.split(|&b| b == 0).filter(|name| !name.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let is_acl = name == ACCESS_ACL;
        if !is_acl && !name.starts_with("user.") {
            continue;
        }
        had_acl |= is_acl;
        let copied = value(from, name)
            .and_then(|value| rustix::fs::fsetxattr(&to, name, &value, XattrFlags::empty()));
        match copied {
            Ok(()) => {}
            Err(e) if is_acl && e != Errno::NODATA => return Err(e),
            // A user attribute that could not be copied (or one removed meanwhile) is left.
            Err(_) => {}
        }
    }
    if !had_acl {
        match rustix::fs::fremovexattr(&to, ACCESS_ACL) {
            Ok(()) | Err(Errno::NODATA | Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The NUL-separated names of `path`'s extended attributes.
fn list(path: &Path) -> Result<Vec<u8>> {
    sized(
        || rustix::fs::llistxattr_query(path),
        |buf| rustix::fs::llistxattr(path, buf),
    )
}

/// The value of `path`'s attribute `name`.
fn value(path: &Path, name: &str) -> Result<Vec<u8>> {
    sized(
        || rustix::fs::lgetxattr_query(path, name),
        |buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

/// Reads something whose size is asked first (`query`) into a buffer of that size (`read`).
/// It can grow between the two calls (ERANGE): asked again, a few times.
fn sized(
    query: impl Fn() -> Result<usize>,
    read: impl Fn(&mut [u8]) -> Result<usize>,
) -> Result<Vec<u8>> {
    for _ in 0..4 {
        let mut buf = vec![0u8; query()?];
        match read(&mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory with the files `old` and `new` in it.
    fn two_files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::write(&old, b"old").expect("write");
        std::fs::write(&new, b"new").expect("write");
        (dir, old, new)
    }

    fn set(path: &Path, name: &str, value: &[u8]) -> bool {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).is_ok()
    }

    #[test]
    fn user_attributes_are_copied_and_capabilities_are_not() {
        let (_dir, old, new) = two_files();
        if !set(&old, "user.origin", b"upload") {
            eprintln!("skipped: no user extended attributes on this file system");
            return;
        }
        // A made-up capability value: only root may set it, and the copy must leave it out.
        let cap_set = set(
            &old,
            "security.capability",
            &[1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let file = std::fs::File::options()
            .write(true)
            .open(&new)
            .expect("open");
        copy_kept(&old, &file).expect("copy");
        assert_eq!(value(&new, "user.origin").expect("copied"), b"upload");
        if cap_set {
            assert!(
                value(&new, "security.capability").is_err(),
                "capabilities are not carried over"
            );
        }
    }

    /// An access ACL in the kernel's xattr layout: version 2, then (tag, permissions, id)
    /// entries: the owner rw, user 1234 r, the owning group r, the mask r, others nothing.
    fn acl() -> Vec<u8> {
        const NO_ID: u32 = u32::MAX;
        let entries: [(u16, u16, u32); 5] = [
            (0x01, 6, NO_ID),
            (0x02, 4, 1234),
            (0x04, 4, NO_ID),
            (0x10, 4, NO_ID),
            (0x20, 0, NO_ID),
        ];
        let mut out = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            out.extend(tag.to_le_bytes());
            out.extend(perm.to_le_bytes());
            out.extend(id.to_le_bytes());
        }
        out
    }

    #[test]
    fn the_access_acl_is_copied_and_an_inherited_one_removed() {
        let (dir, old, new) = two_files();
        if !set(&old, ACCESS_ACL, &acl()) {
            eprintln!("skipped: no ACLs on this file system");
            return;
        }
        let file = std::fs::File::options()
            .write(true)
            .open(&new)
            .expect("open");
        copy_kept(&old, &file).expect("copy");
        assert_eq!(
            value(&new, ACCESS_ACL).expect("an ACL"),
            value(&old, ACCESS_ACL).expect("an ACL")
        );

        // A file made in a directory with a default ACL inherits one; the file it replaces had
        // none, and the replacement must not have one either.
        let inheriting = dir.path().join("inheriting");
        std::fs::create_dir(&inheriting).expect("mkdir");
        assert!(
            set(&inheriting, "system.posix_acl_default", &acl()),
            "a default ACL"
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"plain").expect("write");
        let made = inheriting.join("made");
        std::fs::write(&made, b"made").expect("write");
        assert!(value(&made, ACCESS_ACL).is_ok(), "inherited");
        let file = std::fs::File::options()
            .write(true)
            .open(&made)
            .expect("open");
        copy_kept(&plain, &file).expect("copy");
        assert!(
            value(&made, ACCESS_ACL).is_err(),
            "the inherited ACL is gone"
        );
    }

    #[test]
    fn a_file_without_attributes_copies_nothing() {
        let (_dir, old, new) = two_files();
        let file = std::fs::File::options()
            .write(true)
            .open(&new)
            .expect("open");
        copy_kept(&old, &file).expect("copy");
        let names = list(&new).unwrap_or_default();
        assert!(
            !names
                .split(|&b| b == 0)
                .any(|name| name.starts_with(b"user.")),
            "no user attribute appears"
        );
    }
}
