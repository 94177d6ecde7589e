//! The control plane's volume rules, over the fake node: names and sizes, exclusive
//! read-write, deletes refused while mounted, and attach/detach that store only what the node
//! did.

use alcove_runtime::RuntimeError;
use alcove_wire::file_system::{CreateFileSystemRequest, FileSystemMount};
use serde_json::json;

use super::ControlError;
use super::fake_node::Op;
use super::file_systems::volume_key;
use super::tests::{Harness, harness};

async fn volume(h: &Harness, name: &str) {
    h.control
        .file_systems
        .create(
            "default",
            CreateFileSystemRequest {
                name: name.into(),
                size_mb: 64,
            },
        )
        .await
        .expect("create volume");
}

fn mount(name: &str, path: &str, read_only: bool) -> FileSystemMount {
    FileSystemMount {
        file_system_id: name.into(),
        mount_path: path.into(),
        read_only,
        prefetch: None,
        snapshot_id: None,
        owner: None,
    }
}

#[tokio::test]
async fn volumes_are_created_checked_listed_and_deleted() {
    let h = harness().await;
    let fs = &h.control.file_systems;
    for (name, size) in [("Bad", 64), ("ok", 0), ("ok", -1), ("ok", 1 << 40)] {
        let req = CreateFileSystemRequest {
            name: name.into(),
            size_mb: size,
        };
        assert!(matches!(
            fs.create("default", req).await,
            Err(ControlError::InvalidArgument { .. })
        ));
    }
    volume(&h, "data").await;
    let again = CreateFileSystemRequest {
        name: "data".into(),
        size_mb: 8,
    };
    assert!(matches!(
        fs.create("default", again).await,
        Err(ControlError::Conflict(_))
    ));
    assert_eq!(fs.list("default").await.expect("list").len(), 1);
    assert!(fs.list("other").await.expect("list").is_empty());
    assert!(matches!(
        fs.get("other", "data").await,
        Err(ControlError::NotFound { .. })
    ));
    fs.delete("default", "data").await.expect("delete");
    assert!(matches!(
        fs.get("default", "data").await,
        Err(ControlError::NotFound { .. })
    ));
    let (keys, _) = h.node.volumes(&crate::store::test_id("none"));
    assert!(!keys.contains(&volume_key("default", "data")), "files gone");
}

#[tokio::test]
async fn read_write_is_exclusive_and_a_mounted_volume_is_not_deleted() {
    let h = harness().await;
    volume(&h, "data").await;
    let writer = h
        .create(json!({"file_systems": [{"file_system_id": "data", "mount_path": "/data"}]}))
        .await
        .expect("writer");
    assert_eq!(writer.file_systems.len(), 1);
    for ro in [false, true] {
        let second = h
            .create(json!({"file_systems": [{"file_system_id": "data", "mount_path": "/d", "read_only": ro}]}))
            .await;
        assert!(
            matches!(second, Err(ControlError::FileSystemInUse(_))),
            "{second:?}"
        );
    }
    assert!(matches!(
        h.control.file_systems.delete("default", "data").await,
        Err(ControlError::FileSystemInUse(_))
    ));
    let unknown = h
        .create(json!({"file_systems": [{"file_system_id": "nope", "mount_path": "/d"}]}))
        .await;
    assert!(matches!(unknown, Err(ControlError::NotFound { .. })));
    h.control
        .sandboxes
        .delete(
            Some("default"),
            writer.id.as_str(),
            super::state::TerminationReason::Deleted,
        )
        .await
        .expect("delete sandbox");
    // Ended sandboxes hold nothing: two readers now.
    for _ in 0..2 {
        h.create(json!({"file_systems": [{"file_system_id": "data", "mount_path": "/d", "read_only": true}]}))
            .await
            .expect("reader");
    }
    let info = h
        .control
        .file_systems
        .get("default", "data")
        .await
        .expect("get");
    assert_eq!(info.attachments.len(), 2);
    assert!(info.attachments.iter().all(|a| a.read_only));
}

#[tokio::test]
async fn attach_and_detach_store_only_what_the_node_did() {
    let h = harness().await;
    volume(&h, "data").await;
    let sb = h.create(json!({})).await.expect("sandbox");
    let id = sb.id.to_string();
    let sandboxes = &h.control.sandboxes;

    h.node.refuse(
        Op::AttachVolume,
        RuntimeError::Refused("a symlink is in the way".into()),
    );
    let refused = sandboxes
        .attach("default", &id, &[mount("data", "/mnt/x", false)])
        .await;
    assert!(
        matches!(refused, Err(ControlError::Conflict(_))),
        "{refused:?}"
    );
    assert!(
        h.status(&id).await.file_systems.is_empty(),
        "nothing stored"
    );

    let bad = sandboxes
        .attach("default", &id, &[mount("data", "/proc/x", false)])
        .await;
    assert!(matches!(bad, Err(ControlError::InvalidArgument { .. })));

    let record = sandboxes
        .attach("default", &id, &[mount("data", "/mnt/x", false)])
        .await
        .expect("attach");
    assert_eq!(record.file_systems, [mount("data", "/mnt/x", false)]);
    assert_eq!(h.node.volumes(&sb.id).1, ["/mnt/x"]);
    let twice = sandboxes
        .attach("default", &id, &[mount("data", "/mnt/y", true)])
        .await;
    assert!(
        matches!(twice, Err(ControlError::Conflict(_))),
        "one volume once per sandbox"
    );

    h.node.refuse(
        Op::DetachVolume,
        RuntimeError::Busy("files are open".into()),
    );
    let busy = sandboxes.detach("default", &id, "/mnt/x").await;
    assert!(
        matches!(busy, Err(ControlError::FileSystemInUse(_))),
        "{busy:?}"
    );
    assert_eq!(
        h.status(&id).await.file_systems.len(),
        1,
        "still mounted, still listed"
    );

    let record = sandboxes
        .detach("default", &id, "/mnt/x")
        .await
        .expect("detach");
    assert!(record.file_systems.is_empty());
    assert!(h.node.volumes(&sb.id).1.is_empty());
    assert!(matches!(
        sandboxes.detach("default", &id, "/mnt/x").await,
        Err(ControlError::NotFound { .. })
    ));
}
