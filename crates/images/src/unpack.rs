//! Unpacking a layer archive into a directory, treating every byte as
//! hostile.
//!
//! An OCI layer is a tar stream (possibly gzip or zstd compressed). The
//! unpacker:
//!
//! * never writes outside the layer directory: entries with `..` components
//!   are refused, absolute paths are taken relative to the layer, and no
//!   path component is ever followed through a symlink (each parent is
//!   checked with `lstat` and created as a real directory);
//! * turns `.wh.<name>` into an overlayfs whiteout (a 0/0 character device)
//!   and `.wh..wh..opq` into the `trusted.overlay.opaque` xattr;
//! * creates symlinks as they are (their targets are never followed here),
//!   and hard links only to entries earlier in the same layer;
//! * leaves out device nodes (a FIFO is kept), and every xattr but `user.*`;
//! * keeps modes (setuid included: every sandbox mount is `nosuid`) and
//!   numeric owners (the sandbox's own ids; ids past 65535 become 65534);
//! * stops with [`crate::ImageStoreError::TooLarge`] past
//!   [`UnpackLimits::max_bytes`] unpacked or [`UnpackLimits::max_entries`]
//!   entries (a decompression bomb), and removes what it wrote on any error.

/// Bounds on one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of file content, in all.
    pub max_bytes: u64,
    /// Entries, in all.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 4_000_000,
        }
    }
}
