//! Routes of `{B}/archived-sandboxes` (docs/protocol/control-plane.md, Archived sandboxes):
//! ended sandboxes, newest first, kept for `--archive-ttl`.

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::sandbox::{ArchivedSandboxInfo, ListArchivedSandboxesResponse};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::AppState;
use super::error::ApiError;
use super::openapi::{ArchivedParam, tags};
use super::sandboxes::{ident, namespace};
use crate::control::ControlError;
use crate::store::{ArchiveKey, Direction, SandboxRecord};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page.
pub const MAX_LIMIT: u32 = 1000;

/// Query of `GET {B}/archived-sandboxes`. Each value is read as text and checked here, so a
/// bad one is answered with its field's name; an empty value counts as absent.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArchivedQuery {
    /// Most sandboxes in the page (described by [`limit_schema`]).
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    /// Where the page starts: a `next_cursor` or `prev_cursor` of an earlier page (opaque).
    cursor: Option<String>,
    /// Which way the page goes (described by [`direction_schema`]).
    #[param(schema_with = direction_schema)]
    direction: Option<String>,
}

fn limit_schema() -> Object {
    ObjectBuilder::new()
        .description(Some("Most sandboxes in the page: 1 to 1000 (default 100)."))
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .build()
}

fn direction_schema() -> Object {
    ObjectBuilder::new()
        .description(Some(
            "`forward` (default): sandboxes older than the cursor's, the next page. `backward`: \
             newer ones, the previous page. Without a cursor, `forward` starts at the newest and \
             `backward` at the oldest.",
        ))
        .schema_type(Type::String)
        .enum_values(Some(["forward", "backward"]))
        .default(Some("forward".into()))
        .build()
}

/// What a valid query asks for.
#[derive(Debug, PartialEq)]
struct Page {
    limit: u32,
    cursor: Option<ArchiveKey>,
    direction: Direction,
}

fn invalid(field: &'static str, reason: &str) -> ApiError {
    ControlError::InvalidArgument {
        field,
        reason: reason.to_string(),
    }
    .into()
}

/// Checks the query; a bad value is a 400 that names its field.
fn page_of(query: Result<Query<ArchivedQuery>, QueryRejection>) -> Result<Page, ApiError> {
    let Query(q) = query?;
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    let limit = match given(q.limit) {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let cursor = given(q.cursor)
        .map(|text| {
            ArchiveKey::from_cursor(&text).map_err(|_| {
                invalid(
                    "cursor",
                    "not a cursor of this server (pass a prev_cursor or next_cursor back as it came)",
                )
            })
        })
        .transpose()?;
    let direction = match given(q.direction).as_deref() {
        None | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(_) => return Err(invalid("direction", "must be forward or backward")),
    };
    Ok(Page {
        limit,
        cursor,
        direction,
    })
}

/// An archived sandbox as clients see it (texts free of host details, as for live ones).
fn archived_info(state: &AppState, record: &SandboxRecord) -> ArchivedSandboxInfo {
    ArchivedSandboxInfo {
        sandbox: super::public_info(state, record),
        // Rows come from the archive, which holds only rows with the time set.
        archived_at: record
            .archived_at
            .or(record.terminated_at)
            .unwrap_or(record.created_at),
    }
}

/// `GET {B}/archived-sandboxes`.
#[utoipa::path(
    get,
    path = "/archived-sandboxes",
    tag = tags::ARCHIVE,
    operation_id = "listArchivedSandboxes",
    description = "Ended sandboxes of the namespace (terminated or failed), newest first (by `archived_at`, then id), one page at a time. Each stays for the server's `--archive-ttl` after it ended.",
    params(ArchivedQuery),
    responses(
        (status = 200, description = "One page, newest first, with the cursors of the pages around it.", body = ListArchivedSandboxesResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: `limit` out of range, a `cursor` this server did not give out, or a `direction` other than `forward` or `backward` (the message names the field).", body = ApiErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<ArchivedQuery>, QueryRejection>,
) -> Result<Json<ListArchivedSandboxesResponse>, ApiError> {
    let page = page_of(query)?;
    let found = state
        .control
        .archive
        .page(
            namespace(&params),
            page.cursor.as_ref(),
            page.direction,
            page.limit,
        )
        .await?;
    Ok(Json(ListArchivedSandboxesResponse {
        sandboxes: found
            .records
            .iter()
            .map(|r| archived_info(&state, r))
            .collect(),
        prev_cursor: found.prev.as_ref().map(ArchiveKey::to_cursor),
        next_cursor: found.next.as_ref().map(ArchiveKey::to_cursor),
    }))
}

/// `GET {B}/archived-sandboxes/{id}`.
#[utoipa::path(
    get,
    path = "/archived-sandboxes/{id}",
    tag = tags::ARCHIVE,
    operation_id = "getArchivedSandbox",
    params(ArchivedParam),
    responses(
        (status = 200, description = "The archived sandbox.", body = ArchivedSandboxInfo),
        (status = 404, description = "`NOT_FOUND`: no such sandbox in the namespace, it is still live, or its retention ran out.", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ArchivedSandboxInfo>, ApiError> {
    let record = state
        .control
        .archive
        .get(namespace(&params), ident(&params)?)
        .await?;
    Ok(Json(archived_info(&state, &record)))
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, Uri};

    use super::*;

    fn query(text: &str) -> Result<Page, ApiError> {
        let uri: Uri = format!("/archived-sandboxes?{text}").parse().expect("uri");
        page_of(Query::try_from_uri(&uri))
    }

    #[test]
    fn defaults_and_valid_values() {
        let all_defaults = Page {
            limit: DEFAULT_LIMIT,
            cursor: None,
            direction: Direction::Forward,
        };
        assert_eq!(query("").expect("empty"), all_defaults);
        assert_eq!(
            query("limit=&cursor=&direction=").expect("empty values"),
            all_defaults
        );
        assert_eq!(query("unknown=1").expect("unknown keys"), all_defaults);
        let key = ArchiveKey {
            archived_at: 5,
            id: crate::store::test_id("a"),
        };
        let page = query(&format!(
            "limit=1000&cursor={}&direction=backward",
            key.to_cursor()
        ))
        .expect("valid");
        assert_eq!(
            page,
            Page {
                limit: 1000,
                cursor: Some(key),
                direction: Direction::Backward
            }
        );
        assert_eq!(query("limit=1").expect("one").limit, 1);
    }

    #[test]
    fn bad_values_are_400_naming_the_field() {
        for (text, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("limit=1.5", "limit"),
            ("cursor=garbage!", "cursor"),
            ("cursor=YTE6MTIzOm5vdC1hbi1pZA", "cursor"),
            ("direction=sideways", "direction"),
            ("direction=Forward", "direction"),
        ] {
            let err = query(text).expect_err(text);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{text}");
            assert!(
                err.message().starts_with(&format!("invalid {field}: ")),
                "{text}: {}",
                err.message()
            );
        }
        let err = query("limit=1&limit=2").expect_err("twice");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
