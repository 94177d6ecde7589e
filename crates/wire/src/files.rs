//! File bodies (docs/protocol/sandbox-api.md, Files): the `?path=` query and directory
//! listings.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::time::{EpochMillis, EpochMillisSchema};

/// Query of every `/api/v1/files` route. Clients form-encode it, so `+` decodes to a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilePathQuery {
    /// Absolute path inside the sandbox.
    pub path: String,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    /// File name (not a path).
    pub name: String,
    /// Whether it is a directory (symbolic links to directories count as directories).
    pub is_dir: bool,
    /// Size in bytes; `null` for directories.
    #[schema(required = true)]
    pub size: Option<u64>,
    /// Modification time, epoch milliseconds.
    #[schema(value_type = Option<EpochMillisSchema>, required = true)]
    pub modified_at: Option<EpochMillis>,
}

/// Body of `GET /api/v1/files/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    /// The directory listed, as requested.
    pub path: String,
    /// Its entries: directories first, then by name.
    pub entries: Vec<FileEntry>,
}

/// Orders entries as indexify does: directories before files, then by name (byte order).
pub fn listing_order(a: &FileEntry, b: &FileEntry) -> Ordering {
    b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, is_dir: bool) -> FileEntry {
        FileEntry {
            name: name.into(),
            is_dir,
            size: (!is_dir).then_some(1),
            modified_at: None,
        }
    }

    #[test]
    fn directories_come_first_then_names() {
        let mut entries = [
            entry("b.txt", false),
            entry("z", true),
            entry("a.txt", false),
            entry("c", true),
        ];
        entries.sort_by(listing_order);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "z", "a.txt", "b.txt"]);
    }

    #[test]
    fn directory_size_serializes_as_null() {
        let value = serde_json::to_value(entry("sub", true)).expect("serializes");
        assert_eq!(value["size"], serde_json::Value::Null);
        assert_eq!(value["is_dir"], true);
    }
}
