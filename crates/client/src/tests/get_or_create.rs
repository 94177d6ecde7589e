//! `get_or_create` against the fake: races, waits, resumes and refusals.

use alcove_wire::sandbox::{SandboxInfo, SandboxStatus};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::fake::{self, Hits};
use crate::{BindOutcome, ClientError, CreateOptions};

const BY_NAME: &str = "/v1/namespaces/default/sandboxes/env";
const BY_ID: &str = "/v1/namespaces/default/sandboxes/sb";
const CREATE: &str = "/v1/namespaces/default/sandboxes";

fn named(status: SandboxStatus) -> SandboxInfo {
    let mut info = fake::info("sb", status, "http://unused");
    info.name = Some("env".into());
    info
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "sandbox env not found", "code": "SANDBOX_NOT_FOUND"})),
    )
        .into_response()
}

fn taken() -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"message": "name env is taken", "code": "NAME_TAKEN"})),
    )
        .into_response()
}

#[tokio::test]
async fn a_free_name_is_created_and_a_lost_race_attaches_to_the_winner() {
    let looks = Hits::default();
    let router = axum::Router::new()
        .route(
            BY_NAME,
            get(|State(looks): State<Hits>| async move {
                // Free at the first look, held by the race's winner after.
                if looks.hit() == 0 {
                    return not_found();
                }
                Json(named(SandboxStatus::Running)).into_response()
            }),
        )
        .route(CREATE, post(|| async { taken() }))
        .with_state(looks.clone());
    let client = fake::client(&fake::serve(router).await);
    let (info, outcome) = client
        .get_or_create(CreateOptions::new().name("env"), true)
        .await
        .expect("attaches");
    assert_eq!((info.id.as_str(), outcome), ("sb", BindOutcome::Attached));
    assert_eq!(looks.count(), 2);

    let router = axum::Router::new()
        .route(BY_NAME, get(|| async { not_found() }))
        .route(
            CREATE,
            post(|Json(body): Json<serde_json::Value>| async move {
                assert_eq!(body["name"], "env");
                assert_eq!(body["resources"]["cpus"], 2.0);
                Json(json!({"sandbox_id": "sb", "status": "running",
                    "sandbox": named(SandboxStatus::Running)}))
            }),
        );
    let client = fake::client(&fake::serve(router).await);
    let (_, outcome) = client
        .get_or_create(CreateOptions::new().name("env").cpus(2.0), true)
        .await
        .expect("creates");
    assert_eq!(outcome, BindOutcome::Created);
}

#[tokio::test]
async fn a_starting_holder_is_waited_for_and_a_suspended_one_resumed_when_asked() {
    let polls = Hits::default();
    let router = axum::Router::new()
        .route(
            BY_NAME,
            get(|| async { Json(named(SandboxStatus::Pending)) }),
        )
        .route(
            BY_ID,
            get(|State(polls): State<Hits>| async move {
                let status = if polls.hit() < 2 {
                    SandboxStatus::Pending
                } else {
                    SandboxStatus::Running
                };
                Json(named(status))
            }),
        )
        .with_state(polls.clone());
    let client = fake::client(&fake::serve(router).await);
    let (info, outcome) = client
        .get_or_create(CreateOptions::new().name("env"), true)
        .await
        .expect("waits");
    assert_eq!(
        (info.status, outcome),
        (SandboxStatus::Running, BindOutcome::Attached)
    );
    assert_eq!(polls.count(), 3);

    let resumes = Hits::default();
    let router = axum::Router::new()
        .route(
            BY_NAME,
            get(|| async { Json(named(SandboxStatus::Suspended)) }),
        )
        .route(
            "/v1/namespaces/default/sandboxes/sb/resume",
            post(|State(resumes): State<Hits>| async move {
                resumes.hit();
                Json(named(SandboxStatus::Running))
            }),
        )
        .route(BY_ID, get(|| async { Json(named(SandboxStatus::Running)) }))
        .with_state(resumes.clone());
    let client = fake::client(&fake::serve(router).await);
    let (info, outcome) = client
        .get_or_create(CreateOptions::new().name("env"), false)
        .await
        .expect("attaches");
    assert_eq!(
        (info.status, outcome),
        (SandboxStatus::Suspended, BindOutcome::Attached)
    );
    assert_eq!(resumes.count(), 0);
    let (info, outcome) = client
        .get_or_create(CreateOptions::new().name("env"), true)
        .await
        .expect("resumes");
    assert_eq!(
        (info.status, outcome),
        (SandboxStatus::Running, BindOutcome::Resumed)
    );
    assert_eq!(resumes.count(), 1);
}

#[tokio::test]
async fn no_name_an_id_for_a_name_and_a_name_that_stays_held_are_errors() {
    let posts = Hits::default();
    let router = axum::Router::new()
        .route(BY_NAME, get(|| async { not_found() }))
        .route(
            BY_ID,
            get(|| async {
                let mut info = fake::info("sb", SandboxStatus::Running, "http://unused");
                info.name = Some("other".into());
                Json(info)
            }),
        )
        .route(
            CREATE,
            post(|State(posts): State<Hits>| async move {
                posts.hit();
                taken()
            }),
        )
        .with_state(posts.clone());
    let client = fake::client(&fake::serve(router).await);
    for options in [CreateOptions::new(), CreateOptions::new().name(" ")] {
        let err = client
            .get_or_create(options, true)
            .await
            .expect_err("no name");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    }
    let err = client
        .get_or_create(CreateOptions::new().name("sb"), true)
        .await
        .expect_err("an id");
    assert!(err.to_string().contains("is the id of a sandbox"), "{err}");
    assert_eq!(posts.count(), 0);
    let err = client
        .get_or_create(CreateOptions::new().name("env"), true)
        .await
        .expect_err("held");
    assert!(
        err.to_string().contains("stayed held after 5 attempts"),
        "{err}"
    );
    assert_eq!(posts.count(), 5);
}
