//! Image calls against the fake: references in paths, error codes, pulls and builds with and
//! without progress, streamed imports and build contexts, snapshots saved as images.

use std::sync::{Arc, Mutex};

use alcove_wire::image::{ImageInfo, ImageProgressEvent, ImageRunConfig};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::fake;
use crate::{BuildOptions, ClientError, PullOptions};

fn image(id: &str, names: &[&str], source: &str) -> ImageInfo {
    ImageInfo {
        id: id.into(),
        names: names.iter().map(|n| n.to_string()).collect(),
        manifest_digest: None,
        source: source.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        size_bytes: 1234,
        layers: vec![],
        config: ImageRunConfig::default(),
        used_by: None,
    }
}

fn sse(events: &[ImageProgressEvent]) -> Response {
    let mut body = String::new();
    for event in events {
        let json = serde_json::to_string(event).expect("json");
        body.push_str(&format!("event: x\ndata: {json}\n\n: keep-alive\n\n"));
    }
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .is_some_and(|v| v == "text/event-stream")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"message": message, "code": code}))).into_response()
}

/// Paths of the entries of a tar.
fn tar_paths(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("a tar")
        .map(|e| {
            let e = e.expect("entry");
            e.path()
                .expect("path")
                .display()
                .to_string()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn references_travel_as_one_segment_and_errors_keep_their_codes() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/images",
            get(|| async {
                Json(json!({"images": [image("sha256:aa", &["alcove/debian"], "builtin")]}))
            }),
        )
        .route(
            "/v1/namespaces/default/images/{*reference}",
            get(move |uri: Uri, Path(reference): Path<String>| {
                let log = log.clone();
                async move {
                    log.lock().expect("lock").push(uri.path().to_string());
                    if reference == "localhost:5000/tools/jq:1" {
                        return Json(image("sha256:bb", &[&reference], "pull")).into_response();
                    }
                    error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such image")
                }
            })
            .delete(|Path(reference): Path<String>| async move {
                if reference == "busy:1" {
                    return error(
                        StatusCode::CONFLICT,
                        "IMAGE_IN_USE",
                        "image busy:1 is in use by sandbox sb-1",
                    );
                }
                Json(json!({"untagged": [reference], "deleted": ["sha256:cc"], "freed_bytes": 42}))
                    .into_response()
            }),
        );
    let client = fake::client(&fake::serve(router).await);

    let images = client.list_images().await.expect("list");
    assert_eq!(images[0].names, ["alcove/debian"]);
    let got = client
        .get_image("localhost:5000/tools/jq:1")
        .await
        .expect("get");
    assert_eq!(got.id, "sha256:bb");
    assert_eq!(
        seen.lock().expect("lock").clone(),
        ["/v1/namespaces/default/images/localhost:5000%2Ftools%2Fjq:1"]
    );
    let err = client.get_image("nope:1").await.expect_err("404");
    assert!(
        matches!(err, ClientError::ImageNotFound { reference: Some(ref r), .. } if r == "nope:1"),
        "{err}"
    );
    let deleted = client.delete_image("old:1").await.expect("deleted");
    assert_eq!(
        (deleted.untagged, deleted.freed_bytes),
        (vec!["old:1".into()], 42)
    );
    let err = client.delete_image("busy:1").await.expect_err("409");
    assert_eq!(err.code(), Some("IMAGE_IN_USE"));
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert!(err.to_string().contains("sandbox sb-1"), "{err}");
    for bad in ["", "a b", "../x", "a/./b"] {
        let err = client.get_image(bad).await.expect_err("refused");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    }
}

#[tokio::test]
async fn pulls_block_or_stream_their_progress() {
    let bodies = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let log = bodies.clone();
    let router = axum::Router::new().route(
        "/v1/namespaces/default/images/pull",
        post(
            move |headers: HeaderMap, Json(body): Json<serde_json::Value>| {
                let log = log.clone();
                async move {
                    log.lock().expect("lock").push(body.clone());
                    let reference = body["reference"].as_str().unwrap_or_default().to_string();
                    if body["password"] == "wrong" {
                        return error(StatusCode::UNAUTHORIZED, "REGISTRY_UNAUTHORIZED", "refused");
                    }
                    let stored = image("sha256:dd", &[&reference], "pull");
                    if !wants_events(&headers) {
                        return Json(stored).into_response();
                    }
                    let layer = |current, status: &str| {
                        ImageProgressEvent::Layer(alcove_wire::image::LayerProgress {
                            digest: "sha256:l1".into(),
                            status: status.into(),
                            current_bytes: current,
                            total_bytes: 100,
                        })
                    };
                    if reference == "missing:1" {
                        return sse(&[ImageProgressEvent::Error {
                            code: "NOT_FOUND".into(),
                            message: "the registry has no missing:1".into(),
                            status: 404,
                        }]);
                    }
                    sse(&[
                        ImageProgressEvent::Resolved {
                            manifest_digest: "sha256:m".into(),
                            layers: vec![],
                        },
                        layer(40, "downloading"),
                        layer(100, "done"),
                        ImageProgressEvent::Done {
                            image: Box::new(stored),
                        },
                    ])
                }
            },
        ),
    );
    let client = fake::client(&fake::serve(router).await);

    let options = PullOptions::new()
        .name("mine:1")
        .credentials("ci", "s3cret");
    let pulled = client
        .pull_image("localhost:5000/x:1", &options, None)
        .await
        .expect("blocking pull");
    assert_eq!(pulled.id, "sha256:dd");
    assert_eq!(
        bodies.lock().expect("lock")[0],
        json!({"reference": "localhost:5000/x:1", "name": "mine:1", "username": "ci", "password": "s3cret"})
    );

    let mut events = Vec::new();
    let mut record = |e: &ImageProgressEvent| events.push(e.clone());
    let pulled = client
        .pull_image(
            "localhost:5000/x:1",
            &PullOptions::new().auth_secret("REG"),
            Some(&mut record),
        )
        .await
        .expect("followed pull");
    assert_eq!(pulled.names, ["localhost:5000/x:1"]);
    let bytes: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            ImageProgressEvent::Layer(l) => Some(l.current_bytes),
            _ => None,
        })
        .collect();
    assert_eq!(bytes, [40, 100]);
    assert!(matches!(
        events.last(),
        Some(ImageProgressEvent::Done { .. })
    ));
    assert_eq!(bodies.lock().expect("lock")[1]["auth_secret"], "REG");

    let mut ignore = |_: &ImageProgressEvent| {};
    let err = client
        .pull_image("missing:1", &PullOptions::new(), Some(&mut ignore))
        .await
        .expect_err("error event");
    assert!(matches!(err, ClientError::ImageNotFound { .. }), "{err}");
    let err = client
        .pull_image("x:1", &PullOptions::new().credentials("ci", "wrong"), None)
        .await
        .expect_err("401");
    assert_eq!(err.code(), Some("REGISTRY_UNAUTHORIZED"));
    assert!(
        !matches!(err, ClientError::Unauthorized { .. }),
        "not the API key"
    );
    assert!(!err.to_string().contains("wrong"));
}

#[tokio::test]
async fn imports_stream_the_archive_as_a_tar() {
    let router = axum::Router::new().route(
        "/v1/namespaces/default/images/import",
        post(
            |headers: HeaderMap, RawQuery(query): RawQuery, body: Bytes| async move {
                assert_eq!(headers[header::CONTENT_TYPE], "application/x-tar");
                assert_eq!(headers.get_all(header::CONTENT_TYPE).iter().count(), 1);
                assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string());
                let name = query.unwrap_or_default();
                let mut info = image("sha256:ee", &[], "import");
                info.size_bytes = body.len() as u64;
                info.names = vec![name];
                Json(info)
            },
        ),
    );
    let client = fake::client(&fake::serve(router).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image.tar");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).expect("write");
    let imported = client
        .import_image(&path, Some("imp:1"))
        .await
        .expect("imported");
    assert_eq!(imported.size_bytes, 200_000);
    assert_eq!(imported.names, ["name=imp%3A1"]);
    let imported = client.import_image(&path, None).await.expect("imported");
    assert_eq!(imported.names, [""]);
    let err = client
        .import_image(dir.path().join("missing.tar"), None)
        .await
        .expect_err("no file");
    assert!(matches!(err, ClientError::Io { .. }), "{err}");
}

#[tokio::test]
async fn builds_send_the_context_and_follow_their_steps() {
    let router = axum::Router::new().route(
        "/v1/namespaces/default/images/build",
        post(
            |headers: HeaderMap, RawQuery(query): RawQuery, body: Body| async move {
                assert_eq!(headers[header::CONTENT_TYPE], "application/x-tar");
                let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
                let paths = tar_paths(&body);
                let query = query.unwrap_or_default();
                if query.contains("name=bad") {
                    let failed = ImageProgressEvent::Error {
                        code: "BUILD_FAILED".into(),
                        message: "step 2 (RUN false) exited with 1".into(),
                        status: 422,
                    };
                    if wants_events(&headers) {
                        return sse(&[failed]);
                    }
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "BUILD_FAILED",
                        "step 2 (RUN false) exited with 1",
                    );
                }
                let mut built = image("sha256:ff", &["b:1"], "build");
                built.names = vec![query, paths.join(",")];
                if !wants_events(&headers) {
                    return Json(built).into_response();
                }
                sse(&[
                    ImageProgressEvent::Step {
                        number: 1,
                        total: 2,
                        instruction: "FROM alcove/debian".into(),
                        cached: false,
                    },
                    ImageProgressEvent::Step {
                        number: 2,
                        total: 2,
                        instruction: "RUN echo hi".into(),
                        cached: false,
                    },
                    ImageProgressEvent::Output {
                        stream: "stdout".into(),
                        line: "hi".into(),
                    },
                    ImageProgressEvent::Done {
                        image: Box::new(built),
                    },
                ])
            },
        ),
    );
    let client = fake::client(&fake::serve(router).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("Dockerfile"), "FROM alcove/debian\nRUN echo hi\n").expect("write");
    std::fs::write(root.join(".dockerignore"), "*.log\n").expect("write");
    std::fs::write(root.join("f"), "data").expect("write");
    std::fs::write(root.join("debug.log"), "noise").expect("write");

    let built = client
        .build_image_from_dockerfile(root, "b:1", &BuildOptions::new(), None)
        .await
        .expect("built");
    assert_eq!(built.names, ["name=b%3A1", ".dockerignore,Dockerfile,f"]);

    let mut lines = Vec::new();
    let mut record = |e: &ImageProgressEvent| match e {
        ImageProgressEvent::Step {
            number,
            total,
            instruction,
            ..
        } => lines.push(format!("Step {number}/{total} : {instruction}")),
        ImageProgressEvent::Output { line, .. } => lines.push(line.clone()),
        _ => {}
    };
    let options = BuildOptions::new()
        .build_arg("V", "1")
        .no_cache(true)
        .allow_internet(false);
    let built = client
        .build_image_from_dockerfile(root, "b:1", &options, Some(&mut record))
        .await
        .expect("built");
    assert_eq!(
        built.names[0],
        "name=b%3A1&build_arg=V%3D1&no_cache=true&allow_internet=false"
    );
    assert_eq!(
        lines,
        [
            "Step 1/2 : FROM alcove/debian",
            "Step 2/2 : RUN echo hi",
            "hi"
        ]
    );

    for followed in [false, true] {
        let mut ignore = |_: &ImageProgressEvent| {};
        let progress: Option<crate::ProgressCallback<'_>> =
            if followed { Some(&mut ignore) } else { None };
        let err = client
            .build_image_from_dockerfile(root, "bad:1", &BuildOptions::new(), progress)
            .await
            .expect_err("build failed");
        assert_eq!(err.code(), Some("BUILD_FAILED"), "{err}");
        assert_eq!(err.status(), Some(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(err.to_string().contains("exited with 1"), "{err}");
    }

    let err = client
        .build_image_from_dockerfile(root.join("nope"), "b:1", &BuildOptions::new(), None)
        .await
        .expect_err("no directory");
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    let err = client
        .build_image_from_dockerfile(root, "b:1", &BuildOptions::new().dockerfile("Other"), None)
        .await
        .expect_err("no Dockerfile");
    assert!(err.to_string().contains("Other"), "{err}");
}

#[tokio::test]
async fn a_snapshot_is_saved_as_an_image() {
    let router = axum::Router::new().route(
        "/v1/namespaces/default/snapshots/{id}/image",
        post(
            |Path(id): Path<String>, Json(body): Json<serde_json::Value>| async move {
                if id != "snap-1" {
                    return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such snapshot");
                }
                let name = body["name"].as_str().unwrap_or_default().to_string();
                Json(image("sha256:11", &[&name], "snapshot")).into_response()
            },
        ),
    );
    let client = fake::client(&fake::serve(router).await);
    let saved = client
        .save_snapshot_as_image("snap-1", "saved:1")
        .await
        .expect("saved");
    assert_eq!(
        (saved.names, saved.source),
        (vec!["saved:1".into()], "snapshot".into())
    );
    let err = client
        .save_snapshot_as_image("snap-2", "saved:1")
        .await
        .expect_err("404");
    assert!(matches!(err, ClientError::SnapshotNotFound { .. }), "{err}");
}
