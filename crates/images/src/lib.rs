//! Alcove's image store: one content-addressed store of OCI images under the
//! images directory.
//!
//! ```text
//! <root>/blobs/sha256/<hex>          compressed layers, manifests, configs (0600)
//! <root>/layers/sha256/<hex>/fs/     a layer unpacked once, keyed by its diff id,
//!                                    in overlayfs form (whiteouts are 0/0 char
//!                                    devices, opaque directories carry the
//!                                    trusted.overlay.opaque xattr), ids as stored
//! <root>/images/sha256/<hex>.json    one record per image, keyed by config digest
//! <root>/refs.json                   name:tag -> image id
//! <root>/tmp/                        work in progress; emptied at open
//! ```
//!
//! A sandbox's root filesystem is an overlay whose lower directories are the
//! `fs/` directories of its image's layers, so images that share a base share
//! its files on disk and in the page cache. Nothing here knows about
//! sandboxes: the server resolves a reference to an [`ImageRecord`] and hands
//! the runtime the layer directories and the run configuration.

pub mod digest;
pub mod error;
pub mod import;
pub mod pack;
pub mod pull;
pub mod reference;
// The runtime's remover of hostile trees of any depth, compiled here too:
// neither crate depends on the other, and one copy of it is kept.
#[path = "../../runtime/src/remove_tree.rs"]
pub(crate) mod remove_tree;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::ImageStoreError;
pub use reference::ImageRef;
pub use store::{ImageRecord, ImageSource, ImageStore, LayerRecord, RunConfig};
