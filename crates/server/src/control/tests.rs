//! The control plane against the in-memory node: lifecycle, suspend/resume and
//! snapshot bookkeeping, failures half-way, timeouts, recovery decisions and
//! the per-sandbox op locks. No root, runc or CRIU needed.

use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::runc::ContainerStatus;
use alcove_runtime::{RuntimeError, SandboxId};
use alcove_wire::sandbox::{CreateSandboxRequest, SandboxStatus};
use alcove_wire::snapshot::{SnapshotStatus, SnapshotType};
use alcove_wire::time::now_millis;

use super::fake_node::{FakeNode, Op};
use super::state::TerminationReason;
use super::validate::HostLimits;
use super::{AgentClient, Control, ControlConfig, ControlError};
use crate::store::{Direction, SandboxRecord, Store};

const WAIT: Duration = Duration::from_secs(10);
/// The archive's retention in these tests.
const ARCHIVE_TTL: Duration = Duration::from_secs(3_600);

pub(crate) struct Harness {
    pub(crate) control: Arc<Control>,
    pub(super) node: FakeNode,
    _dir: tempfile::TempDir,
}

/// A store holding one built-in image, `alcove/debian` (aliases `default`,
/// `debian`), of one tiny layer: the fake node never mounts it.
fn test_images(dir: &std::path::Path) -> crate::images::Images {
    let builtin = dir.join("images/debian");
    std::fs::create_dir_all(builtin.join("rootfs/etc")).expect("mkdir");
    std::fs::write(builtin.join("rootfs/etc/hostname"), "x\n").expect("write");
    std::fs::write(
        builtin.join("manifest.json"),
        r#"{"name":"alcove/debian","aliases":["default","debian"],"recipe_sha256":"test"}"#,
    )
    .expect("manifest");
    crate::images::Images::open(&dir.join("images"), Default::default()).expect("images")
}

pub(crate) async fn harness() -> Harness {
    harness_with_blobs(None).await
}

/// A harness whose node has the blob store at `blobs` (a directory), if any.
async fn harness_with_blobs(blobs: Option<&std::path::Path>) -> Harness {
    let blobs = blobs.map(|dir| {
        alcove_blobs::BlobStore::open(&format!("file://{}", dir.display()), &Default::default())
            .expect("blob store")
    });
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dir.path().join("alcove.db"))
        .await
        .expect("store");
    let node = FakeNode::default();
    let control = Arc::new(Control::new(
        store,
        Arc::new(node.clone()),
        ControlConfig {
            sandbox_url: "http://localhost:8900".into(),
            ingress_endpoint: "sandbox.localhost:8900".into(),
            snapshots_dir: dir.path().join("snapshots"),
            compress_after: None,
            archive_ttl: ARCHIVE_TTL,
            timeout_suspend_attempts: 3,
            timeout_suspend_retry: std::time::Duration::from_secs(60),
            host: HostLimits {
                cpus: 4.0,
                memory_mb: 16_384,
            },
            blobs,
        },
        AgentClient::new(),
        crate::secrets::SecretBox::load_or_create(&dir.path().join("secrets.key"))
            .expect("secrets key"),
        crate::logs::Logs::new(
            crate::logs::files::LogFiles::new(dir.path().join("logs"), 1 << 20),
            AgentClient::new(),
            7,
        )
        .0,
        Arc::new(test_images(dir.path())),
    ));
    Harness {
        control,
        node,
        _dir: dir,
    }
}

fn request(json: serde_json::Value) -> CreateSandboxRequest {
    serde_json::from_value(json).expect("request")
}

impl Harness {
    pub(crate) async fn create(
        &self,
        json: serde_json::Value,
    ) -> Result<SandboxRecord, ControlError> {
        Ok(self
            .control
            .sandboxes
            .create("default", request(json), true, WAIT)
            .await?
            .record)
    }

    /// Every stored sandbox of the default namespace, ended ones included.
    async fn listed(&self) -> Vec<SandboxRecord> {
        self.control.store().list("default").await.expect("list")
    }

    /// The ids on the newest page of the default namespace's archive.
    async fn archived_ids(&self) -> Vec<SandboxId> {
        self.control
            .archive
            .page("default", None, Direction::Forward, 1000)
            .await
            .expect("archive page")
            .records
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    /// The stored record of `id` (an id, or a label given to `stored`).
    pub(super) async fn status(&self, id: &str) -> SandboxRecord {
        self.control
            .store()
            .get(&crate::store::test_id(id))
            .await
            .expect("store")
            .expect("record")
    }

    /// The id of the live sandbox named `name`.
    async fn create_id(&self, name: &str) -> SandboxId {
        self.control
            .ctx
            .resolve(None, name)
            .await
            .expect("resolve")
            .id
    }

    /// Waits until `id` is `status` with no operation under way.
    async fn settled(&self, id: &str, status: SandboxStatus) -> SandboxRecord {
        for _ in 0..500 {
            let r = self.status(id).await;
            if r.status == status && r.transition.is_none() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id} never became {status}: {:?}", self.status(id).await);
    }
}

#[tokio::test]
async fn create_runs_and_delete_ends_and_cleans_up() {
    let h = harness().await;
    let r = h.create(serde_json::json!({})).await.expect("create");
    assert_eq!(r.status, SandboxStatus::Running);
    assert!(r.slot.is_some());
    assert_eq!(h.node.container(&r.id), Some(ContainerStatus::Running));
    assert_eq!(h.control.running_count(), 1);
    let ended = h
        .control
        .sandboxes
        .delete(Some("default"), &r.id, TerminationReason::Deleted)
        .await
        .expect("delete");
    assert_eq!(ended.status, SandboxStatus::Terminated);
    assert_eq!(ended.termination_reason.as_deref(), Some("deleted"));
    assert_eq!(h.node.destroyed(), vec![r.id.clone()]);
    assert_eq!(h.node.slots_in_use(), 0);
    assert_eq!(h.control.running_count(), 0);
    // Deleting again is a no-op, not an error.
    let again = h
        .control
        .sandboxes
        .delete(None, &r.id, TerminationReason::Deleted)
        .await
        .expect("delete again");
    assert_eq!(again.status, SandboxStatus::Terminated);
}

#[tokio::test]
async fn a_failed_start_is_failed_with_a_clean_reason_and_nothing_left() {
    let h = harness().await;
    h.node.fail(Op::Create, 1);
    let r = h
        .create(serde_json::json!({}))
        .await
        .expect("create answers");
    assert_eq!(r.status, SandboxStatus::Failed);
    assert_eq!(r.termination_reason.as_deref(), Some("startup_failed"));
    let details = r.error_details.expect("details");
    assert!(
        !details.contains("/var/lib") && !details.contains("runc --root"),
        "{details}"
    );
    assert_eq!(h.node.slots_in_use(), 0);
    assert_eq!(h.control.running_count(), 0);
    // The next create works.
    let ok = h.create(serde_json::json!({})).await.expect("create");
    assert_eq!(ok.status, SandboxStatus::Running);
}

#[tokio::test]
async fn a_full_host_refuses_before_anything_is_stored() {
    let h = harness().await;
    h.node.set_full(true);
    let err = h.create(serde_json::json!({})).await.expect_err("refused");
    assert!(
        matches!(
            err,
            ControlError::Runtime(alcove_runtime::RuntimeError::Capacity(_))
        ),
        "{err:?}"
    );
    assert!(h.listed().await.is_empty());
}

#[tokio::test]
async fn a_node_selector_holds_only_on_a_node_with_those_labels() {
    let h = harness().await;
    // A bad selector is refused naming the field.
    let err = h
        .create(serde_json::json!({"node_selector": {"bad key": "x"}}))
        .await
        .expect_err("bad key");
    assert!(
        matches!(
            err,
            ControlError::InvalidArgument {
                field: "node_selector",
                ..
            }
        ),
        "{err:?}"
    );
    // This node has no labels: a selector does not match it, and nothing is left.
    let err = h
        .create(serde_json::json!({"node_selector": {"zone": "b"}}))
        .await
        .expect_err("no match");
    assert!(
        matches!(err, ControlError::NotMatchedHere { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("zone=b"), "{err}");
    assert!(h.listed().await.is_empty());
    assert_eq!(h.control.running_count(), 0);
    // With the label it runs, and keeps its selector.
    let _ = h
        .control
        .ctx
        .labels
        .set([("zone".to_string(), "b".to_string())].into());
    let r = h
        .create(serde_json::json!({"node_selector": {"zone": "b"}}))
        .await
        .expect("create");
    assert_eq!(r.status, SandboxStatus::Running);
    assert_eq!(r.node_selector.get("zone").map(String::as_str), Some("b"));
}

#[tokio::test]
async fn an_unknown_image_is_not_found_and_stores_nothing() {
    let h = harness().await;
    let err = h
        .create(serde_json::json!({"image": "nope/nothing"}))
        .await
        .expect_err("unknown image");
    assert!(
        matches!(err, ControlError::NotFound { kind: "image", .. }),
        "{err:?}"
    );
    assert!(h.listed().await.is_empty());
}

/// A built image of one layer holding file `file`, committed under `names`.
fn commit_test_image(
    store: &alcove_images::ImageStore,
    file: &str,
    config: alcove_images::RunConfig,
    names: &[&str],
) -> alcove_images::ImageRecord {
    let tree = tempfile::tempdir().expect("tmp");
    std::fs::write(tree.path().join(file), file).expect("write");
    let layer = store
        .layer_from_dir(tree.path(), &Default::default())
        .expect("layer");
    let names: Vec<String> = names.iter().map(ToString::to_string).collect();
    store
        .commit_image(
            vec![layer],
            config,
            alcove_images::ImageSource::Build,
            None,
            &names,
        )
        .expect("commit")
}

#[tokio::test]
async fn image_deletions_made_elsewhere_remove_this_nodes_copy_once_unused() {
    let blobs = tempfile::tempdir().expect("tmp");
    let h = harness_with_blobs(Some(blobs.path())).await;
    let store = h.control.images().store().clone();
    let image = commit_test_image(&store, "app", Default::default(), &["my/app:1", "my/app:2"]);
    let [first, second] = [image.names[0].clone(), image.names[1].clone()];
    let id = image.id.to_string();
    let db = h.control.store();
    let sweep = || h.control.sweep_deleted_images();
    // Recorded now, as a delete records them.
    let now = alcove_wire::time::now_millis();

    // A name removed through another node goes here; the image keeps its other name.
    db.record_image_deletions(&[(first.clone(), id.clone())], now)
        .await
        .expect("record");
    sweep().await;
    assert_eq!(
        store.get(&image.id).expect("kept").names,
        std::slice::from_ref(&second)
    );

    // The image deleted through another node: kept while a sandbox here runs it.
    let user = h
        .create(serde_json::json!({"image": second}))
        .await
        .expect("create");
    db.record_image_deletions(&[(id.clone(), id.clone())], now)
        .await
        .expect("record");
    sweep().await;
    assert!(
        store.get(&image.id).is_ok(),
        "removed under a running sandbox"
    );
    h.control
        .sandboxes
        .delete(None, user.id.as_str(), TerminationReason::Deleted)
        .await
        .expect("delete");
    sweep().await;
    assert!(store.get(&image.id).is_err(), "kept once unused");

    // A built-in image is never removed this way.
    let builtin = store.resolve("alcove/debian").expect("built-in");
    db.record_image_deletions(&[(builtin.id.to_string(), builtin.id.to_string())], now)
        .await
        .expect("record");
    sweep().await;
    assert!(store.get(&builtin.id).is_ok());
}

#[tokio::test]
async fn sandboxes_pin_their_image_and_keep_it_from_deletion() {
    let h = harness().await;
    let store = h.control.images().store().clone();
    // No Entrypoint: the fake node has no agent to start one.
    let config = alcove_images::RunConfig {
        exposed_ports: vec![8080],
        env: vec!["A=b".into()],
        ..Default::default()
    };
    let image = commit_test_image(&store, "app", config, &["my/app:1"]);
    let record = h
        .create(serde_json::json!({"image": "my/app:1", "name": "pinned"}))
        .await
        .expect("create");
    assert_eq!(
        record.image,
        format!("my/app:1@{}", image.id),
        "pinned by id"
    );
    assert_eq!(
        h.control.info(&record).image,
        "my/app:1",
        "users see the name"
    );
    assert!(record.exposed_ports.contains(&8080), "the image's ports");
    // The name moves to another image: the sandbox keeps its own.
    commit_test_image(&store, "other", Default::default(), &["my/app:1"]);
    let users = h.control.image_users(&image.id).await.expect("users");
    assert_eq!(users.sandboxes, [record.id.to_string()]);
    let err = h
        .control
        .delete_image(image.id.as_str())
        .await
        .expect_err("in use");
    assert!(
        matches!(
            err,
            ControlError::Image(alcove_images::ImageStoreError::InUse { .. })
        ),
        "{err:?}"
    );
    // The built-in image is setup's: it keeps its names.
    let err = h
        .control
        .delete_image("alcove/debian")
        .await
        .expect_err("built-in");
    assert!(
        matches!(err, ControlError::InvalidArgument { .. }),
        "{err:?}"
    );
    h.control
        .sandboxes
        .delete(None, record.id.as_str(), TerminationReason::Deleted)
        .await
        .expect("delete");
    let deleted = h
        .control
        .delete_image(image.id.as_str())
        .await
        .expect("unused now");
    assert_eq!(deleted.deleted, [image.id.to_string()]);
    assert!(deleted.freed_bytes > 0);
}

#[tokio::test]
async fn only_named_sandboxes_suspend_and_they_resume() {
    let h = harness().await;
    let eph = h.create(serde_json::json!({})).await.expect("create");
    let err = h
        .control
        .suspension
        .suspend(None, &eph.id, Some(WAIT))
        .await
        .expect_err("ephemeral");
    assert!(
        matches!(err, ControlError::InvalidArgument { .. }),
        "{err:?}"
    );

    let named = h
        .create(serde_json::json!({"name": "web"}))
        .await
        .expect("create");
    let (r, done) = h
        .control
        .suspension
        .suspend(None, "web", Some(WAIT))
        .await
        .expect("suspend");
    assert!(done);
    assert_eq!(r.status, SandboxStatus::Suspended);
    assert!(h.node.has_dump(&named.id));
    assert_eq!(h.node.container(&named.id), None);
    // Suspending again is a no-op; resuming brings it back in its slot.
    assert!(
        h.control
            .suspension
            .suspend(None, "web", Some(WAIT))
            .await
            .expect("again")
            .1
    );
    let (r, done) = h
        .control
        .suspension
        .resume(None, "web", Some(WAIT))
        .await
        .expect("resume");
    assert!(done);
    assert_eq!(r.status, SandboxStatus::Running);
    assert_eq!(r.slot, named.slot);
    assert!(!h.node.has_dump(&named.id));
    // A resumed sandbox gets its network policy again.
    assert!(!h.node.egress().is_empty());
}

#[tokio::test]
async fn a_failed_suspend_keeps_it_running_and_says_why_without_host_details() {
    let h = harness().await;
    h.create(serde_json::json!({"name": "db"}))
        .await
        .expect("create");
    h.node.fail(Op::Suspend, 1);
    let err = h
        .control
        .suspension
        .suspend(None, "db", Some(WAIT))
        .await
        .expect_err("the suspend fails");
    let ControlError::OperationFailed {
        op: "suspend",
        reason,
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(
        !reason.contains("/var/lib") && !reason.contains("runc"),
        "{reason}"
    );
    let r = h
        .settled(&h.create_id("db").await, SandboxStatus::Running)
        .await;
    let details = r.error_details.expect("details");
    assert!(details.starts_with("suspend failed"), "{details}");
    assert!(!details.contains("/var/lib"), "{details}");
    assert_eq!(h.control.running_count(), 1, "still routable");
    assert!(
        h.control
            .suspension
            .suspend(None, "db", Some(WAIT))
            .await
            .expect("retry")
            .1
    );
}

#[tokio::test]
async fn a_suspend_the_sandbox_refuses_is_a_conflict_not_a_failure() {
    let h = harness().await;
    h.create(serde_json::json!({"name": "vf"}))
        .await
        .expect("create");
    let why = "process 8 (python3) waits for a vfork child that has not called exec, and CRIU \
               cannot dump a process in that state; the sandbox keeps running";
    h.node
        .refuse(Op::Suspend, RuntimeError::Busy(why.to_string()));
    let err = h
        .control
        .suspension
        .suspend(None, "vf", Some(WAIT))
        .await
        .expect_err("the suspend is refused");
    let ControlError::OperationRefused {
        op: "suspend",
        reason,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(reason, why);
    let answer = crate::api::error::ApiError::from(err);
    assert_eq!(answer.status(), axum::http::StatusCode::CONFLICT);
    assert_eq!(
        answer.code(),
        alcove_wire::error::ErrorCode::OperationRefused
    );
    // It runs on, says why where clients read it, and suspends once the cause is gone.
    let r = h
        .settled(&h.create_id("vf").await, SandboxStatus::Running)
        .await;
    assert!(r.error_details.is_some_and(|d| d.contains("vfork")));
    assert_eq!(h.control.running_count(), 1, "still routable");
    assert!(
        h.control
            .suspension
            .suspend(None, "vf", Some(WAIT))
            .await
            .expect("suspend once the process is gone")
            .1
    );
}

#[tokio::test]
async fn a_copy_the_sandbox_refuses_is_a_conflict_and_makes_nothing() {
    let h = harness().await;
    let source = h
        .create(serde_json::json!({"name": "src"}))
        .await
        .expect("create");
    h.node.refuse(
        Op::Snapshot,
        RuntimeError::Refused("a terminal of the sandbox has a foreground job".into()),
    );
    let err = h
        .control
        .sandboxes
        .copy("default", "src", 2, None)
        .await
        .expect_err("the copy is refused");
    assert!(
        matches!(&err, ControlError::OperationRefused { op: "copy", reason, .. } if reason.contains("terminal")),
        "{err:?}"
    );
    let live = h.control.sandboxes.list("default").await.expect("list");
    assert_eq!(live.len(), 1, "no copy was made: {live:?}");
    assert_eq!(live[0].id, source.id);
}

#[tokio::test]
async fn a_failed_resume_keeps_the_dump_for_the_next_try() {
    let h = harness().await;
    let r = h
        .create(serde_json::json!({"name": "job"}))
        .await
        .expect("create");
    h.control
        .suspension
        .suspend(None, "job", Some(WAIT))
        .await
        .expect("suspend");
    h.node.fail(Op::Resume, 1);
    let err = h
        .control
        .suspension
        .resume(None, "job", Some(WAIT))
        .await
        .expect_err("the resume fails");
    assert!(
        matches!(err, ControlError::OperationFailed { op: "resume", .. }),
        "{err:?}"
    );
    let after = h.settled(&r.id, SandboxStatus::Suspended).await;
    assert!(
        after
            .error_details
            .expect("details")
            .starts_with("resume failed")
    );
    assert!(h.node.has_dump(&r.id));
    let (again, done) = h
        .control
        .suspension
        .resume(None, "job", Some(WAIT))
        .await
        .expect("resume");
    assert!(done);
    assert_eq!(again.status, SandboxStatus::Running);
}

#[tokio::test]
async fn snapshots_complete_restore_and_fail_cleanly() {
    let h = harness().await;
    let src = h.create(serde_json::json!({})).await.expect("create");
    let snap = h
        .control
        .snapshots
        .create(None, &src.id, Some(SnapshotType::Memory), Duration::ZERO)
        .await
        .expect("snapshot");
    assert_eq!(snap.status, SnapshotStatus::InProgress);
    let done = wait_snapshot(&h, &snap.id).await;
    assert_eq!(done.status, SnapshotStatus::Completed);
    assert_eq!(
        h.settled(&src.id, SandboxStatus::Running).await.status,
        SandboxStatus::Running
    );

    let clone = h
        .create(serde_json::json!({"snapshot_id": snap.id}))
        .await
        .expect("restore");
    assert_eq!(clone.status, SandboxStatus::Running);
    assert_ne!(clone.id, src.id);
    assert_ne!(clone.slot, src.slot);

    // Asked to wait, the request answers with the outcome.
    let waited = h
        .control
        .snapshots
        .create(None, &src.id, None, Duration::from_secs(60))
        .await
        .expect("snapshot");
    assert_eq!(waited.status, SnapshotStatus::Completed);
    assert!(waited.size_bytes.is_some());

    h.node.fail(Op::Snapshot, 1);
    let bad = h
        .control
        .snapshots
        .create(None, &src.id, None, Duration::ZERO)
        .await
        .expect("started");
    let failed = wait_snapshot(&h, &bad.id).await;
    assert_eq!(failed.status, SnapshotStatus::Failed);
    let err = failed.error.expect("error");
    assert!(!err.contains("/var/lib"), "{err}");
    assert_eq!(h.status(&src.id).await.status, SandboxStatus::Running);

    // A deleted snapshot cannot be restored.
    h.control
        .snapshots
        .delete(None, &snap.id)
        .await
        .expect("delete snapshot");
    let gone = h.create(serde_json::json!({"snapshot_id": snap.id})).await;
    assert!(
        matches!(gone, Err(ControlError::NotFound { .. })),
        "{gone:?}"
    );
}

#[tokio::test]
async fn a_restore_without_a_policy_gets_its_snapshots_sources() {
    let h = harness().await;
    let closed = serde_json::json!({"allow_internet_access": false, "allow_out": ["10.1.2.3"]});
    let src = h
        .create(serde_json::json!({"network": closed}))
        .await
        .expect("create");
    for kind in [SnapshotType::Memory, SnapshotType::Filesystem] {
        let snap = h
            .control
            .snapshots
            .create(None, &src.id, Some(kind), Duration::from_secs(60))
            .await
            .expect("snapshot");
        assert_eq!(snap.status, SnapshotStatus::Completed);
        let restored = h
            .create(serde_json::json!({"snapshot_id": snap.id}))
            .await
            .expect("restore");
        assert!(!restored.network_policy.allow_internet_access, "{kind:?}");
        assert_eq!(restored.network_policy.allow_out, vec!["10.1.2.3"]);
        let slot = u32::try_from(restored.slot.expect("slot")).expect("slot");
        assert!(h.node.egress().contains(&(slot, false)), "{kind:?}");
        // A policy named at the restore wins.
        let opened = h
            .create(serde_json::json!({
                "snapshot_id": snap.id,
                "network": {"allow_internet_access": true},
            }))
            .await
            .expect("restore");
        assert!(opened.network_policy.allow_internet_access, "{kind:?}");
    }
}

async fn wait_snapshot(h: &Harness, id: &str) -> crate::store::SnapshotRecord {
    for _ in 0..500 {
        let s = h.control.snapshots.get(None, id).await.expect("snapshot");
        if s.status != SnapshotStatus::InProgress {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("snapshot {id} never finished");
}

#[tokio::test]
async fn timeouts_end_ephemeral_sandboxes_and_suspend_named_ones() {
    let h = harness().await;
    let eph = h
        .create(serde_json::json!({"timeout_secs": 60}))
        .await
        .expect("create");
    let named = h
        .create(serde_json::json!({"name": "keep", "timeout_secs": 60}))
        .await
        .expect("create");
    let deadline = h.status(&eph.id).await.deadline_at.expect("deadline");
    // Before the deadline nothing happens.
    super::timeouts::reap_once(&h.control, deadline - 1).await;
    assert_eq!(h.status(&eph.id).await.status, SandboxStatus::Running);
    super::timeouts::reap_once(&h.control, deadline + 120_000).await;
    let ended = h.status(&eph.id).await;
    assert_eq!(ended.status, SandboxStatus::Terminated);
    assert_eq!(ended.termination_reason.as_deref(), Some("timeout"));
    let slept = h.status(&named.id).await;
    assert_eq!(slept.status, SandboxStatus::Suspended);
    // Suspended time does not count: what was left is kept for the resume.
    assert!(slept.timeout_remaining_ms.is_some());
    assert_eq!(slept.deadline_at, None);
}

#[tokio::test]
async fn a_sandbox_suspended_by_its_timeout_gets_a_whole_timeout_when_resumed() {
    let h = harness().await;
    let named = h
        .create(serde_json::json!({"name": "keep", "timeout_secs": 1}))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    super::timeouts::reap_once(&h.control, now_millis()).await;
    let slept = h.status(&named.id).await;
    assert_eq!(slept.status, SandboxStatus::Suspended);
    assert_eq!(slept.timeout_remaining_ms, Some(0));
    // Resuming it with the nothing that was left would see it suspended again at once.
    let before = now_millis();
    let (resumed, _) = h
        .control
        .suspension
        .resume(None, "keep", Some(WAIT))
        .await
        .expect("resume");
    let deadline = resumed.deadline_at.expect("a deadline again");
    assert!(deadline >= before + 1000, "{deadline} vs {before}");
    super::timeouts::reap_once(&h.control, now_millis()).await;
    assert_eq!(h.status(&named.id).await.status, SandboxStatus::Running);
}

#[tokio::test]
async fn a_timeout_suspend_that_fails_is_tried_again_a_minute_later() {
    let h = harness().await;
    let named = h
        .create(serde_json::json!({"name": "stuck", "timeout_secs": 1}))
        .await
        .expect("create");
    let deadline = h.status(&named.id).await.deadline_at.expect("deadline");
    h.node.fail(Op::Suspend, 1);
    super::timeouts::reap_once(&h.control, deadline + 1).await;
    let kept = h.status(&named.id).await;
    assert_eq!(kept.status, SandboxStatus::Running);
    // Not at the next tick: every try freezes the sandbox for a dump.
    let again = kept.deadline_at.expect("a deadline again");
    assert!(again >= now_millis() + 59_000, "{again}");
    super::timeouts::reap_once(&h.control, again).await;
    assert_eq!(h.status(&named.id).await.status, SandboxStatus::Suspended);
}

/// Runs the timeout reaper just past the sandbox's deadline.
async fn reap_at_deadline(h: &Harness, id: &str) {
    let deadline = h.status(id).await.deadline_at.expect("a deadline");
    super::timeouts::reap_once(&h.control, deadline + 1).await;
}

/// Waits (up to 5 s) for a sandbox to end.
async fn wait_ended(h: &Harness, id: &str) -> SandboxRecord {
    for _ in 0..250 {
        let record = h.status(id).await;
        if !record.status.is_live() {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.status(id).await
}

#[tokio::test]
async fn a_sandbox_whose_timeout_suspends_keep_failing_ends_with_its_files_kept() {
    let h = harness().await;
    let named = h
        .create(serde_json::json!({"name": "undumpable", "timeout_secs": 1}))
        .await
        .expect("create");
    h.node.fail(Op::Suspend, 3);
    // Two failures: it keeps running, its deadline a retry away each time.
    for tries in 1..=2 {
        reap_at_deadline(&h, &named.id).await;
        assert_eq!(h.status(&named.id).await.status, SandboxStatus::Running);
        assert_eq!(h.control.suspension.timeout_failures(&named.id), tries);
    }
    // The third ends it, in the background.
    reap_at_deadline(&h, &named.id).await;
    let ended = wait_ended(&h, &named.id).await;
    assert_eq!(ended.status, SandboxStatus::Terminated);
    assert_eq!(ended.termination_reason.as_deref(), Some("timeout"));
    let snapshots = h
        .control
        .snapshots
        .list("default", None)
        .await
        .expect("snapshots");
    let kept: Vec<_> = snapshots
        .iter()
        .filter(|s| s.sandbox_id == named.id)
        .collect();
    assert_eq!(kept.len(), 1, "{snapshots:?}");
    assert_eq!(kept[0].snapshot_type, SnapshotType::Filesystem);
    let why = ended.error_details.expect("why it ended");
    assert!(why.contains("failed 3 times"), "{why}");
    assert!(why.contains(&kept[0].id), "{why}");
    assert_eq!(h.control.suspension.timeout_failures(&named.id), 0);
}

#[tokio::test]
async fn a_sandbox_whose_files_cannot_be_kept_is_not_ended_by_its_timeout() {
    let h = harness().await;
    let named = h
        .create(serde_json::json!({"name": "full-host", "timeout_secs": 1}))
        .await
        .expect("create");
    h.node.fail(Op::Suspend, 4);
    // The host has no room for its snapshot: the give-up keeps it running.
    h.node.set_full(true);
    for _ in 0..3 {
        reap_at_deadline(&h, &named.id).await;
    }
    for _ in 0..50 {
        if h.control.suspension.timeout_failures(&named.id) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.control.suspension.timeout_failures(&named.id), 2);
    assert_eq!(h.status(&named.id).await.status, SandboxStatus::Running);
    // Room again: the next failed suspend ends it, its files kept.
    h.node.set_full(false);
    reap_at_deadline(&h, &named.id).await;
    let ended = wait_ended(&h, &named.id).await;
    assert_eq!(ended.termination_reason.as_deref(), Some("timeout"));
}

#[tokio::test]
async fn a_snapshot_the_disk_has_no_room_for_is_refused() {
    let h = harness().await;
    let src = h.create(serde_json::json!({})).await.expect("create");
    h.node.set_full(true);
    let refused = h
        .control
        .snapshots
        .create(None, &src.id, Some(SnapshotType::Filesystem), WAIT)
        .await;
    assert!(
        matches!(
            refused,
            Err(ControlError::Runtime(RuntimeError::Capacity(_)))
        ),
        "{refused:?}"
    );
    let left = h
        .control
        .snapshots
        .list("default", None)
        .await
        .expect("snapshots");
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_timeout_suspend_that_succeeds_starts_the_count_again() {
    let h = harness().await;
    let named = h
        .create(serde_json::json!({"name": "flaky", "timeout_secs": 1}))
        .await
        .expect("create");
    h.node.fail(Op::Suspend, 2);
    for _ in 0..2 {
        reap_at_deadline(&h, &named.id).await;
    }
    assert_eq!(h.control.suspension.timeout_failures(&named.id), 2);
    reap_at_deadline(&h, &named.id).await;
    assert_eq!(h.status(&named.id).await.status, SandboxStatus::Suspended);
    assert_eq!(h.control.suspension.timeout_failures(&named.id), 0);
    let (_, resumed) = h
        .control
        .suspension
        .resume(None, "flaky", Some(WAIT))
        .await
        .expect("resume");
    assert!(resumed);
    // Two more failures after the resume are not a third in a row.
    h.node.fail(Op::Suspend, 2);
    for _ in 0..2 {
        reap_at_deadline(&h, &named.id).await;
    }
    assert_eq!(h.status(&named.id).await.status, SandboxStatus::Running);
    assert_eq!(h.control.suspension.timeout_failures(&named.id), 2);
}

#[tokio::test]
async fn a_resume_asked_right_after_a_suspend_follows_it() {
    let h = harness().await;
    let r = h
        .create(serde_json::json!({"name": "back"}))
        .await
        .expect("create");
    // Another operation holds the sandbox: the suspend is answered before it begins, and the
    // sandbox still reads running when the resume comes.
    let lock = h.control.ctx.op_lock(&r.id);
    let guard = lock.lock().await;
    let (suspending, done) = h
        .control
        .suspension
        .suspend(None, "back", None)
        .await
        .expect("suspend asked");
    assert!(!done);
    assert_eq!(suspending.status, SandboxStatus::Running);
    let (resuming, done) = h
        .control
        .suspension
        .resume(None, "back", None)
        .await
        .expect("resume asked");
    assert!(
        !done,
        "a resume that found it running was lost to the suspend after it"
    );
    assert_eq!(resuming.status, SandboxStatus::Running);
    drop(guard);
    let (resumed, done) = h
        .control
        .suspension
        .resume(None, "back", Some(WAIT))
        .await
        .expect("resume");
    assert!(done);
    assert_eq!(resumed.status, SandboxStatus::Running);
    assert!(
        h.node.resumed().iter().any(|(id, _)| id == &r.id),
        "it was suspended, then resumed"
    );
}

#[tokio::test]
async fn a_resume_asked_while_a_timeout_suspend_waits_follows_it() {
    let h = harness().await;
    let r = h
        .create(serde_json::json!({"name": "late", "timeout_secs": 1}))
        .await
        .expect("create");
    let deadline = h.status(&r.id).await.deadline_at.expect("deadline");
    // Another operation holds the sandbox: the timeout's suspend waits for it.
    let lock = h.control.ctx.op_lock(&r.id);
    let guard = lock.lock().await;
    let reaper = {
        let control = h.control.clone();
        tokio::spawn(async move { super::timeouts::reap_once(&control, deadline + 1).await })
    };
    // The reaper has taken the sandbox up once its suspend is marked (or gave up on it).
    for _ in 0..200 {
        if h.control.suspension.suspend_queued(&r.id) || reaper.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, done) = h
        .control
        .suspension
        .resume(None, "late", None)
        .await
        .expect("resume asked");
    assert!(
        !done,
        "a resume that found it running was lost to the timeout's suspend"
    );
    drop(guard);
    reaper.await.expect("reaper");
    let (resumed, done) = h
        .control
        .suspension
        .resume(None, "late", Some(WAIT))
        .await
        .expect("resume");
    assert!(done);
    assert_eq!(resumed.status, SandboxStatus::Running);
    assert!(h.node.resumed().iter().any(|(id, _)| id == &r.id));
}

#[tokio::test]
async fn a_delete_waits_for_a_suspend_under_way_and_leaves_nothing() {
    let h = harness().await;
    let r = h
        .create(serde_json::json!({"name": "race"}))
        .await
        .expect("create");
    h.node.hold(Op::Suspend);
    let (_, done) = h
        .control
        .suspension
        .suspend(None, "race", Some(Duration::ZERO))
        .await
        .expect("suspend started");
    assert!(!done);
    let control = Arc::clone(&h.control);
    let id = r.id.clone();
    let delete = tokio::spawn(async move {
        control
            .sandboxes
            .delete(None, &id, TerminationReason::Deleted)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!delete.is_finished(), "the delete waits for the op lock");
    assert_eq!(h.status(&r.id).await.status, SandboxStatus::Suspending);
    h.node.release(Op::Suspend);
    let ended = delete.await.expect("join").expect("delete");
    assert_eq!(ended.status, SandboxStatus::Terminated);
    assert!(!h.node.has_dump(&r.id), "the dump went with it");
    assert_eq!(h.node.container(&r.id), None);
}

/// Stores a record as a crashed server may have left it.
async fn stored(h: &Harness, id: &str, name: Option<&str>, f: impl FnOnce(&mut SandboxRecord)) {
    let mut r = crate::store::sample_record(id, name);
    f(&mut r);
    h.control.store().insert(&r).await.expect("insert");
}

#[tokio::test]
async fn recovery_puts_adopted_sandboxes_policies_in_force_and_closes_one_it_cannot_resolve() {
    let h = harness().await;
    stored(&h, "restricted", None, |r| {
        r.slot = Some(6);
        r.network_policy.allow_internet_access = false;
        r.network_policy.allow_out = vec!["10.1.2.3".into()];
    })
    .await;
    h.node
        .set_container("restricted", Some(ContainerStatus::Running));
    // Its allow list names a host that no longer resolves: no way out, not an open one.
    stored(&h, "unresolvable", None, |r| {
        r.slot = Some(7);
        r.network_policy.allow_out = vec!["no-such-host.invalid".into()];
        r.network_policy.deny_out = vec!["no-such-host.invalid".into()];
    })
    .await;
    h.node
        .set_container("unresolvable", Some(ContainerStatus::Running));
    h.control.recover().await.expect("recover");
    let egress = h.node.egress();
    assert!(egress.contains(&(6, false)), "{egress:?}");
    assert!(egress.contains(&(7, false)), "{egress:?}");
    assert!(!egress.contains(&(7, true)), "{egress:?}");
    check(&h, "unresolvable", SandboxStatus::Running).await;
}

#[tokio::test]
async fn recovery_settles_what_a_crash_interrupted() {
    let h = harness().await;
    // Running, container alive: adopted.
    stored(&h, "alive", None, |_| {}).await;
    h.node
        .set_container("alive", Some(ContainerStatus::Running));
    // Running, container gone: lost.
    stored(&h, "gone", None, |r| r.slot = Some(4)).await;
    // Snapshotting when the server died, container frozen: thawed and running.
    stored(&h, "frozen", None, |r| {
        r.status = SandboxStatus::Snapshotting;
        r.slot = Some(5);
    })
    .await;
    h.node
        .set_container("frozen", Some(ContainerStatus::Paused));
    // Suspending, dump complete, container gone: suspended.
    stored(&h, "dumped", Some("dumped"), |r| {
        r.status = SandboxStatus::Suspending;
        r.slot = Some(6);
    })
    .await;
    h.node.set_checkpoint("dumped", true);
    // Resuming, restore finished: running, dump dropped.
    stored(&h, "restored", Some("restored"), |r| {
        r.status = SandboxStatus::Suspended;
        r.transition = Some("resuming".into());
        r.slot = Some(7);
    })
    .await;
    h.node
        .set_container("restored", Some(ContainerStatus::Running));
    h.node.set_checkpoint("restored", true);
    // Resuming, restore half-done: back to suspended, dump kept.
    stored(&h, "half", Some("half"), |r| {
        r.status = SandboxStatus::Suspended;
        r.transition = Some("resuming".into());
        r.slot = Some(8);
    })
    .await;
    h.node.set_container("half", Some(ContainerStatus::Created));
    h.node.set_checkpoint("half", true);
    // Pending: the create never finished.
    stored(&h, "pending", None, |r| {
        r.status = SandboxStatus::Pending;
        r.slot = None;
    })
    .await;
    // A container nobody knows: swept.
    h.node
        .set_container("stray", Some(ContainerStatus::Running));

    h.control.recover().await.expect("recover");

    check(&h, "alive", SandboxStatus::Running).await;
    let gone = check(&h, "gone", SandboxStatus::Terminated).await;
    assert_eq!(gone.termination_reason.as_deref(), Some("lost"));
    check(&h, "frozen", SandboxStatus::Running).await;
    assert_eq!(h.node.container("frozen"), Some(ContainerStatus::Running));
    check(&h, "dumped", SandboxStatus::Suspended).await;
    check(&h, "restored", SandboxStatus::Running).await;
    assert!(!h.node.has_dump("restored"));
    check(&h, "half", SandboxStatus::Suspended).await;
    assert!(h.node.has_dump("half"));
    assert_eq!(h.node.container("half"), None);
    let pending = check(&h, "pending", SandboxStatus::Failed).await;
    assert_eq!(
        pending.termination_reason.as_deref(),
        Some("server_restarted")
    );
    assert_eq!(h.node.container("stray"), None);
    assert_eq!(h.control.running_count(), 3);
}

async fn check(h: &Harness, id: &str, status: SandboxStatus) -> SandboxRecord {
    let r = h.status(id).await;
    assert_eq!(
        (r.status, r.transition.as_deref()),
        (status, None),
        "{id}: {r:?}"
    );
    r
}

// --- the archive ----------------------------------------------------------------------------

/// The test's clock: `ms` past a sandbox's archiving.
fn after(record: &SandboxRecord, ms: i64) -> i64 {
    record.archived_at.expect("archived") + ms
}

#[tokio::test]
async fn every_way_of_ending_archives_the_sandbox_with_its_reason() {
    let h = harness().await;
    let deleted = h
        .create(serde_json::json!({"name": "gone-soon"}))
        .await
        .expect("create");
    h.control
        .sandboxes
        .delete(Some("default"), &deleted.id, TerminationReason::Deleted)
        .await
        .expect("delete");
    h.node.fail(Op::Create, 1);
    let failed = h
        .create(serde_json::json!({}))
        .await
        .expect("create answers");
    let timed = h
        .create(serde_json::json!({"timeout_secs": 60}))
        .await
        .expect("create");
    let deadline = h.status(&timed.id).await.deadline_at.expect("deadline");
    super::timeouts::reap_once(&h.control, deadline + 1).await;
    stored(&h, "lost", None, |r| r.slot = Some(9)).await;
    stored(&h, "half-made", None, |r| {
        r.status = SandboxStatus::Pending;
        r.slot = None;
    })
    .await;
    h.control.recover().await.expect("recover");
    let live = h
        .create(serde_json::json!({"name": "stays"}))
        .await
        .expect("create");

    let reasons = [
        (deleted.id.clone(), SandboxStatus::Terminated, "deleted"),
        (failed.id.clone(), SandboxStatus::Failed, "startup_failed"),
        (timed.id.clone(), SandboxStatus::Terminated, "timeout"),
        (
            crate::store::test_id("lost"),
            SandboxStatus::Terminated,
            "lost",
        ),
        (
            crate::store::test_id("half-made"),
            SandboxStatus::Failed,
            "server_restarted",
        ),
    ];
    let archived = h.archived_ids().await;
    assert_eq!(archived.len(), reasons.len(), "{archived:?}");
    for (id, status, reason) in reasons {
        assert!(archived.contains(&id), "{id} ({reason}) is not archived");
        let r = h.control.archive.get("default", &id).await.expect("get");
        assert_eq!(r.status, status, "{id}");
        assert_eq!(r.termination_reason.as_deref(), Some(reason), "{id}");
        assert!(r.terminated_at.is_some(), "{id} has an end time");
        assert_eq!(r.archived_at, r.terminated_at, "{id} archived as it ended");
    }
    // What the archive keeps of a sandbox: its name, image and resources as they were.
    let kept = h
        .control
        .archive
        .get("default", &deleted.id)
        .await
        .expect("get");
    assert_eq!(kept.name.as_deref(), Some("gone-soon"));
    assert_eq!(
        (
            crate::images::display_name(&kept.image),
            kept.cpus,
            kept.memory_mb
        ),
        ("alcove/debian", 1.0, 1024)
    );

    // The live list holds the live one only; the archive never does.
    let listed: Vec<_> = h
        .control
        .sandboxes
        .list("default")
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![live.id.clone()]);
    assert!(!archived.contains(&live.id));
    for ident in [live.id.as_str(), "stays", "gone-soon", "not-an-id"] {
        assert!(
            matches!(
                h.control.archive.get("default", ident).await,
                Err(ControlError::NotFound { .. })
            ),
            "{ident} is no archived sandbox"
        );
    }
    // Another namespace's archive is its own.
    assert!(matches!(
        h.control.archive.get("other", &deleted.id).await,
        Err(ControlError::NotFound { .. })
    ));
    // An ended sandbox is still answered by id (clients poll it to see it end).
    let got = h
        .control
        .sandboxes
        .get("default", &deleted.id)
        .await
        .expect("get");
    assert_eq!(got.status, SandboxStatus::Terminated);
}

#[tokio::test]
async fn the_purge_deletes_expired_sandboxes_and_their_leftovers_only() {
    let h = harness().await;
    let first = h.create(serde_json::json!({})).await.expect("create");
    let first = h
        .control
        .sandboxes
        .delete(None, &first.id, TerminationReason::Deleted)
        .await
        .expect("delete");
    h.node.set_leftovers(&first.id);
    let live = h
        .create(serde_json::json!({"name": "live"}))
        .await
        .expect("create");
    let ttl = i64::try_from(ARCHIVE_TTL.as_millis()).expect("ms");

    // Not yet expired: nothing happens.
    assert_eq!(
        h.control.archive.purge_once(after(&first, ttl - 1)).await,
        0
    );
    assert_eq!(h.archived_ids().await, vec![first.id.clone()]);
    assert!(h.node.has_leftovers(&first.id));

    // Files that cannot be removed keep the row (hidden) for the next pass.
    h.node.fail(Op::RemoveLeftovers, 1);
    assert_eq!(h.control.archive.purge_once(after(&first, ttl)).await, 0);
    assert!(
        h.control
            .store()
            .get(&first.id)
            .await
            .expect("get")
            .is_some()
    );

    // Expired: the files go, then the row; the live sandbox stays.
    assert_eq!(h.control.archive.purge_once(after(&first, ttl)).await, 1);
    assert!(!h.node.has_leftovers(&first.id));
    assert_eq!(h.control.store().get(&first.id).await.expect("get"), None);
    assert!(matches!(
        h.control.sandboxes.get("default", &first.id).await,
        Err(ControlError::NotFound { .. })
    ));
    assert_eq!(h.status(&live.id).await.status, SandboxStatus::Running);
    assert_eq!(
        h.control.archive.purge_once(i64::MAX).await,
        0,
        "live sandboxes are never purged"
    );
    assert_eq!(h.status(&live.id).await.status, SandboxStatus::Running);
}

#[tokio::test]
async fn the_purge_skips_a_sandbox_an_operation_holds() {
    let h = harness().await;
    let r = h.create(serde_json::json!({})).await.expect("create");
    let r = h
        .control
        .sandboxes
        .delete(None, &r.id, TerminationReason::Deleted)
        .await
        .expect("delete");
    let lock = h.control.ctx.op_lock(&r.id);
    let guard = lock.lock().await;
    assert_eq!(h.control.archive.purge_once(i64::MAX).await, 0);
    assert!(h.control.store().get(&r.id).await.expect("get").is_some());
    drop(guard);
    assert_eq!(h.control.archive.purge_once(i64::MAX).await, 1);
}

#[tokio::test]
async fn the_purge_goes_through_more_than_one_batch() {
    let h = harness().await;
    for i in 0..300 {
        stored(&h, &format!("old-{i}"), None, |r| {
            r.status = SandboxStatus::Terminated;
            r.mark_ended(1_000 + i);
        })
        .await;
    }
    assert_eq!(h.control.archive.purge_once(i64::MAX).await, 300);
    assert!(h.listed().await.is_empty());
}

/// A `PATCH` of `resources` only.
fn resize_request(json: serde_json::Value) -> alcove_wire::sandbox::UpdateSandboxRequest {
    serde_json::from_value(serde_json::json!({ "resources": json })).expect("request")
}

#[tokio::test]
async fn a_running_sandbox_is_resized_in_numbered_generations() {
    use alcove_wire::sandbox::ResizeStatus;
    let h = harness().await;
    let sbx = h.create(serde_json::json!({})).await.expect("create");
    let r = h
        .control
        .sandboxes
        .update(
            "default",
            &sbx.id,
            resize_request(serde_json::json!({"memory_mb": 2048})),
        )
        .await
        .expect("resize");
    assert_eq!((r.cpus, r.memory_mb, r.disk_mb), (1.0, 2048, sbx.disk_mb));
    let rr = r.resource_resize.clone().expect("resource_resize");
    assert_eq!(rr.generation, 1);
    assert_eq!(rr.status, ResizeStatus::Succeeded);
    assert_eq!(rr.requested.memory_mb, 2048);
    let applied = h.node.resizes();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].1.memory_mb, 2048);
    assert_eq!(applied[0].1.disk_mb, 10240);

    let r = h
        .control
        .sandboxes
        .update(
            "default",
            &sbx.id,
            resize_request(serde_json::json!({"cpus": 2.0, "disk_mb": 20480})),
        )
        .await
        .expect("resize");
    assert_eq!((r.cpus, r.memory_mb, r.disk_mb), (2.0, 2048, 20480));
    assert_eq!(r.resource_resize.as_ref().map(|r| r.generation), Some(2));
    // Stored, and on the wire.
    let stored = h.status(&sbx.id).await;
    assert_eq!(stored.resource_resize, r.resource_resize);
    let info = serde_json::to_value(stored.to_info("u", "i")).expect("json");
    assert_eq!(info["resource_resize"]["generation"], 2);
    assert_eq!(info["resource_resize"]["status"], "succeeded");
    assert_eq!(info["resources"]["disk_mb"], 20480);
}

#[tokio::test]
async fn resizes_are_refused_before_they_take_a_generation() {
    let h = harness().await;
    let sbx = h.create(serde_json::json!({})).await.expect("create");
    let refuse = |json: serde_json::Value| {
        let control = Arc::clone(&h.control);
        let id = sbx.id.to_string();
        async move {
            control
                .sandboxes
                .update("default", &id, resize_request(json))
                .await
                .expect_err("refused")
        }
    };
    // The disk cannot shrink, values are checked as a create's.
    for json in [
        serde_json::json!({"disk_mb": 5120}),
        serde_json::json!({"cpus": 64.0}),
        serde_json::json!({"memory_mb": 100_000}),
    ] {
        let err = refuse(json.clone()).await;
        assert!(
            matches!(err, ControlError::InvalidArgument { .. }),
            "{json}: {err:?}"
        );
    }
    // Memory below what it uses: 409 with the figures.
    h.control
        .sandboxes
        .update(
            "default",
            &sbx.id,
            resize_request(serde_json::json!({"cpus": 2.0, "memory_mb": 4096})),
        )
        .await
        .expect("grow");
    h.node.set_memory_used(3000 << 20);
    let err = refuse(serde_json::json!({"memory_mb": 2048})).await;
    let ControlError::Conflict(message) = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.contains("2048 MB") && message.contains("3000 MB"),
        "{message}"
    );
    // Mixed with other changes.
    let mut mixed = resize_request(serde_json::json!({"memory_mb": 4096}));
    mixed.name = Some("x".into());
    let err = h
        .control
        .sandboxes
        .update("default", &sbx.id, mixed)
        .await
        .expect_err("mixed");
    assert!(
        matches!(err, ControlError::InvalidArgument { .. }),
        "{err:?}"
    );
    let stored = h.status(&sbx.id).await;
    assert_eq!(stored.resource_resize.map(|r| r.generation), Some(1));
    assert_eq!(stored.memory_mb, 4096);
    assert_eq!(h.node.resizes().len(), 1);
}

#[tokio::test]
async fn a_failed_resize_is_a_failed_generation_and_keeps_the_limits() {
    use alcove_wire::sandbox::ResizeStatus;
    let h = harness().await;
    let sbx = h.create(serde_json::json!({})).await.expect("create");
    h.node.fail(Op::Resize, 1);
    let r = h
        .control
        .sandboxes
        .update(
            "default",
            &sbx.id,
            resize_request(serde_json::json!({"memory_mb": 2048})),
        )
        .await
        .expect("answered");
    assert_eq!(r.memory_mb, 1024);
    let rr = r.resource_resize.expect("resource_resize");
    assert_eq!((rr.generation, rr.status), (1, ResizeStatus::Failed));
    let message = rr.error_message.expect("message");
    assert!(!message.contains("/var/lib"), "{message}");
}

#[tokio::test]
async fn a_suspended_sandbox_gets_its_new_limits_when_it_resumes() {
    use alcove_wire::sandbox::ResizeStatus;
    let h = harness().await;
    let sbx = h
        .create(serde_json::json!({"name": "sleepy"}))
        .await
        .expect("create");
    h.control
        .suspension
        .suspend(None, "sleepy", Some(WAIT))
        .await
        .expect("suspend");
    let r = h
        .control
        .sandboxes
        .update(
            "default",
            "sleepy",
            resize_request(serde_json::json!({"cpus": 2.0, "memory_mb": 3072, "disk_mb": 12288})),
        )
        .await
        .expect("resize");
    assert_eq!(r.status, SandboxStatus::Suspended);
    assert_eq!(
        r.resource_resize.map(|r| r.status),
        Some(ResizeStatus::Succeeded)
    );
    assert!(
        h.node.resizes().is_empty(),
        "nothing to apply while suspended"
    );
    h.control
        .suspension
        .resume(None, "sleepy", Some(WAIT))
        .await
        .expect("resume");
    let resumed = h.node.resumed();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].0, sbx.id);
    assert_eq!(
        (
            resumed[0].1.cpus,
            resumed[0].1.memory_mb,
            resumed[0].1.disk_mb
        ),
        (2.0, 3072, 12288)
    );
}

#[tokio::test]
async fn only_running_and_suspended_sandboxes_resize() {
    let h = harness().await;
    let sbx = h.create(serde_json::json!({})).await.expect("create");
    h.control
        .sandboxes
        .delete(None, &sbx.id, TerminationReason::Deleted)
        .await
        .expect("delete");
    let err = h
        .control
        .sandboxes
        .update(
            "default",
            &sbx.id,
            resize_request(serde_json::json!({"cpus": 2.0})),
        )
        .await
        .expect_err("ended");
    assert!(
        matches!(
            err,
            ControlError::InvalidState { .. } | ControlError::NotFound { .. }
        ),
        "{err:?}"
    );
}

// --- warm pools ------------------------------------------------------------------------------

fn pool_request(json: serde_json::Value) -> alcove_wire::pool::SandboxPoolRequest {
    serde_json::from_value(json).expect("pool request")
}

/// Runs refill passes until the pool has `count` running idle sandboxes.
async fn fill(h: &Harness, pool: &crate::store::PoolRecord, count: usize) -> Vec<SandboxRecord> {
    for _ in 0..200 {
        h.control.pools.refill_once().await;
        let idle: Vec<SandboxRecord> = h
            .control
            .pools
            .members(pool)
            .await
            .expect("members")
            .into_iter()
            .filter(|m| {
                m.pool_state == Some(crate::store::PoolState::Idle)
                    && m.status == SandboxStatus::Running
            })
            .collect();
        if idle.len() >= count {
            return idle;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the pool did not fill to {count}");
}

#[tokio::test]
async fn a_pools_node_selector_keeps_its_sandboxes_on_nodes_with_those_labels() {
    let h = harness().await;
    let pools = &h.control.pools;
    let bad = pools
        .create(
            "default",
            pool_request(serde_json::json!({"node_selector": {"bad key": "x"}})),
        )
        .await
        .expect_err("bad key");
    assert!(
        matches!(
            bad,
            ControlError::InvalidArgument {
                field: "node_selector",
                ..
            }
        ),
        "{bad:?}"
    );
    let pool = pools
        .create(
            "default",
            pool_request(serde_json::json!({"warm_containers": 1, "node_selector": {"zone": "b"}})),
        )
        .await
        .expect("create");
    assert_eq!(
        pool.node_selector.get("zone").map(String::as_str),
        Some("b")
    );
    // This node has no labels: refills start nothing here, and a claim is refused naming them.
    for _ in 0..3 {
        pools.refill_once().await;
    }
    assert!(pools.members(&pool).await.expect("members").is_empty());
    let err = pools
        .claim("default", &pool.id, Default::default(), WAIT)
        .await
        .expect_err("no match");
    assert!(
        matches!(err, ControlError::NotMatchedHere { .. }),
        "{err:?}"
    );
    assert!(pools.members(&pool).await.expect("members").is_empty());
    assert_eq!(h.control.running_count(), 0);

    // With the label the pool fills; its sandboxes, claimed too, carry the selector.
    let _ = h
        .control
        .ctx
        .labels
        .set([("zone".to_string(), "b".to_string())].into());
    let idle = fill(&h, &pool, 1).await;
    assert_eq!(idle[0].node_selector, pool.node_selector);
    let claimed = pools
        .claim("default", &pool.id, Default::default(), WAIT)
        .await
        .expect("claim")
        .record;
    assert_eq!(claimed.node_selector, pool.node_selector);

    // A selector this node does not match, set by an update: its idle sandboxes here end.
    let fresh = fill(&h, &pool, 1).await;
    pools
        .update(
            "default",
            &pool.id,
            pool_request(serde_json::json!({"warm_containers": 1, "node_selector": {"zone": "c"}})),
        )
        .await
        .expect("update");
    pools.refill_once().await;
    let members = pools.members(&pool).await.expect("members");
    assert!(
        members.iter().all(|m| m.id != fresh[0].id),
        "the idle sandbox of the old selector ended: {members:?}"
    );
    assert_eq!(
        members.len(),
        1,
        "only the claimed one is left: {members:?}"
    );
    h.control
        .sandboxes
        .delete(None, claimed.id.as_str(), TerminationReason::Deleted)
        .await
        .expect("delete claimed");
    pools
        .delete("default", &pool.id)
        .await
        .expect("delete pool");
}

#[tokio::test]
async fn pools_hand_out_idle_sandboxes_hide_them_and_cap_at_max_containers() {
    let h = harness().await;
    let pools = &h.control.pools;
    let pool = pools
        .create(
            "default",
            pool_request(
                serde_json::json!({"warm_containers": 1, "max_containers": 2, "timeout_secs": 60}),
            ),
        )
        .await
        .expect("create");
    let idle = fill(&h, &pool, 1).await;
    assert_eq!(
        idle[0].deadline_at, None,
        "an idle sandbox's lifetime starts at its claim"
    );
    // The pool's reserve is not listed, nor addressable.
    assert!(
        h.control
            .sandboxes
            .list("default")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(matches!(
        h.control
            .sandboxes
            .get("default", idle[0].id.as_str())
            .await,
        Err(ControlError::NotFound { .. })
    ));

    let claimed = pools
        .claim("default", &pool.id, Default::default(), WAIT)
        .await
        .expect("claim")
        .record;
    assert_eq!(claimed.id, idle[0].id);
    assert_eq!(claimed.pool_state, Some(crate::store::PoolState::Claimed));
    assert!(
        claimed.deadline_at.is_some(),
        "the timeout counts from the claim"
    );
    assert_eq!(
        h.control
            .sandboxes
            .list("default")
            .await
            .expect("list")
            .len(),
        1
    );

    // The second claim starts (or waits for) another; the third is over max_containers.
    let second = pools
        .claim("default", &pool.id, Default::default(), WAIT)
        .await
        .expect("claim within max")
        .record;
    assert_eq!(second.status, SandboxStatus::Running);
    assert!(matches!(
        pools
            .claim("default", &pool.id, Default::default(), WAIT)
            .await,
        Err(ControlError::PoolAtCapacity { max: 2, .. })
    ));
    assert!(matches!(
        pools.delete("default", &pool.id).await,
        Err(ControlError::PoolInUse { .. })
    ));
    for r in [&claimed, &second] {
        h.control
            .sandboxes
            .delete(Some("default"), r.id.as_str(), TerminationReason::Deleted)
            .await
            .expect("delete");
    }
    fill(&h, &pool, 1).await;
    pools
        .delete("default", &pool.id)
        .await
        .expect("delete pool");
    let live = h.control.store().list_live().await.expect("live");
    assert!(live.is_empty(), "a deleted pool left sandboxes: {live:?}");
    assert!(matches!(
        pools
            .claim("default", &pool.id, Default::default(), WAIT)
            .await,
        Err(ControlError::NotFound { kind: "pool", .. })
    ));
}

#[tokio::test]
async fn claims_racing_the_refiller_all_get_a_sandbox_within_max_containers() {
    let h = harness().await;
    let pools = &h.control.pools;
    let pool = pools
        .create(
            "default",
            pool_request(serde_json::json!({"warm_containers": 1, "max_containers": 3})),
        )
        .await
        .expect("create");
    fill(&h, &pool, 1).await;
    // Three claims for one warm sandbox while the refiller starts its
    // replacement: the pool has room for all three, so none is refused, and
    // together they never take it past max_containers.
    let claim = || pools.claim("default", &pool.id, Default::default(), WAIT);
    let (a, b, c, ()) = tokio::join!(claim(), claim(), claim(), async {
        for _ in 0..20 {
            pools.refill_once().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut ids = Vec::new();
    for outcome in [a, b, c] {
        let record = outcome.expect("a claim within max_containers").record;
        assert_eq!(record.status, SandboxStatus::Running);
        ids.push(record.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "two claims got one sandbox");
    let members = pools.members(&pool).await.expect("members");
    assert!(members.len() <= 3, "past max_containers: {members:?}");
}

#[tokio::test]
async fn a_bad_claim_takes_nothing_and_an_interrupted_one_is_ended() {
    let h = harness().await;
    let pools = &h.control.pools;
    let pool = pools
        .create(
            "default",
            pool_request(serde_json::json!({"warm_containers": 2})),
        )
        .await
        .expect("create");
    let idle = fill(&h, &pool, 2).await;
    // An update that changes nothing keeps the idle sandboxes (the pool names its
    // image by an alias; its sandboxes by the pinned image).
    let same = pools
        .update(
            "default",
            &pool.id,
            pool_request(serde_json::json!({"warm_containers": 2})),
        )
        .await
        .expect("update");
    assert_eq!(same.image, "default");
    let kept: Vec<SandboxId> = fill(&h, &pool, 2).await.into_iter().map(|r| r.id).collect();
    assert_eq!(kept, idle.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    for bad in [
        serde_json::json!({"name": "Bad Name"}),
        serde_json::json!({"env": {"9X": "y"}}),
        serde_json::json!({"secret_names": ["MISSING"]}),
    ] {
        let req = serde_json::from_value(bad).expect("claim request");
        assert!(matches!(
            pools.claim("default", &pool.id, req, WAIT).await,
            Err(ControlError::InvalidArgument { .. })
        ));
    }
    assert_eq!(
        fill(&h, &pool, 2).await.len(),
        2,
        "a bad claim took a sandbox"
    );

    // What a crash between the take and the record leaves behind is ended at start.
    h.control
        .store()
        .set_pool_state(idle[0].id.as_str(), crate::store::PoolState::Claiming)
        .await
        .expect("set");
    h.control.end_interrupted_claims().await.expect("end");
    let ended = h.status(idle[0].id.as_str()).await;
    assert_eq!(ended.status, SandboxStatus::Terminated);
    assert_eq!(ended.termination_reason.as_deref(), Some("claim_failed"));
    for bad in [
        serde_json::json!({"warm_containers": 0}),
        serde_json::json!({"warm_containers": 3, "max_containers": 2}),
        serde_json::json!({"max_containers": 1001}),
    ] {
        assert!(matches!(
            pools.create("default", pool_request(bad)).await,
            Err(ControlError::InvalidArgument { .. })
        ));
    }
    assert_eq!(pools.list("default").await.expect("list").len(), 1);
    pools.delete("default", &pool.id).await.expect("delete");
}

#[tokio::test]
async fn a_copy_is_one_dump_restored_into_new_sandboxes_and_leaves_no_dump() {
    let h = harness().await;
    let src = h
        .create(serde_json::json!({"name": "src", "secret_names": []}))
        .await
        .expect("create");
    let out = h
        .control
        .sandboxes
        .copy("default", "src", 3, None)
        .await
        .expect("copy");
    assert!(out.all_running());
    assert_eq!(out.source_id, src.id);
    assert_eq!(out.copies.len(), 3);
    let mut ids: Vec<_> = out.copies.iter().map(|c| c.id.clone()).collect();
    ids.push(src.id.clone());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "every copy has its own id");
    let mut slots: Vec<_> = out.copies.iter().map(|c| c.slot).collect();
    slots.push(src.slot);
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), 4, "every copy has its own slot");
    assert!(out.copies.iter().all(|c| c.name.is_none()));
    assert_eq!(h.status(&src.id).await.status, SandboxStatus::Running);
    let left: Vec<_> = std::fs::read_dir(h._dir.path().join("snapshots"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the dump is removed: {left:?}");
}

#[tokio::test]
async fn copy_refusals_and_failures_leave_nothing_behind() {
    let h = harness().await;
    let src = h.create(serde_json::json!({})).await.expect("create");
    let before = h.listed().await.len();
    for times in [0, super::MAX_COPIES + 1] {
        let err = h
            .control
            .sandboxes
            .copy("default", &src.id, times, None)
            .await;
        assert!(
            matches!(
                err,
                Err(ControlError::InvalidArgument { field: "times", .. })
            ),
            "{err:?}"
        );
    }
    let err = h.control.sandboxes.copy("other", &src.id, 1, None).await;
    assert!(matches!(err, Err(ControlError::NotFound { .. })), "{err:?}");

    // A failed dump: the source keeps running, no copy is stored.
    h.node.fail(Op::Snapshot, 1);
    let err = h.control.sandboxes.copy("default", &src.id, 2, None).await;
    assert!(
        matches!(err, Err(ControlError::OperationFailed { op: "copy", .. })),
        "{err:?}"
    );
    assert_eq!(h.status(&src.id).await.status, SandboxStatus::Running);
    assert_eq!(h.listed().await.len(), before);

    // One failed restore: reported per copy, the other runs.
    h.node.fail(Op::Restore, 1);
    let out = h
        .control
        .sandboxes
        .copy("default", &src.id, 2, None)
        .await
        .expect("copy");
    assert!(!out.all_running());
    let failed: Vec<_> = out
        .copies
        .iter()
        .filter(|c| c.status == SandboxStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    let details = failed[0].error_details.clone().unwrap_or_default();
    assert!(
        !details.is_empty() && !details.contains("/var/lib"),
        "{details}"
    );
    assert_eq!(
        out.copies
            .iter()
            .filter(|c| c.status == SandboxStatus::Running)
            .count(),
        1
    );
}
