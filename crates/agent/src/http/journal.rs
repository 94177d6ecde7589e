//! `GET /api/v1/journal?after=N` (SSE): the sandbox's journal from record `N + 1` on, then
//! live. The server follows it to keep the sandbox's logs; anyone who may reach the sandbox
//! API may read it, as they may read every process's output.

use std::convert::Infallible;

use alcove_wire::journal::JournalBatch;
use axum::extract::Query;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{AgentError, ApiError};
use super::openapi::{JournalEvents, tags};
use super::sse_response;
use crate::journal::Journal;
use crate::sse;

/// Records sent in one event at most.
const BATCH_RECORDS: usize = 2048;

/// Query of `GET /api/v1/journal`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JournalQuery {
    /// Sequence number of the last record the reader has; `0` (the default) reads all.
    #[serde(default)]
    after: u64,
}

/// `GET /api/v1/journal` (SSE).
#[utoipa::path(
    get,
    path = "/api/v1/journal",
    tag = tags::JOURNAL,
    operation_id = "followJournal",
    params(JournalQuery),
    responses(
        (status = 200, response = JournalEvents),
        (status = 400, description = "`INVALID_ARGUMENT`: `after` is not a number.", body = AgentError),
    )
)]
pub async fn follow(
    query: Result<Query<JournalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::invalid(err.body_text()))?;
    Ok(sse_response(journal_stream(query.after)))
}

fn journal_stream(after: u64) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let journal = Journal::global();
    let changes = journal.subscribe();
    futures::stream::unfold(
        (after, changes),
        move |(mut after, mut changes)| async move {
            loop {
                // Seen before reading, so a push racing with the read still wakes us below.
                changes.borrow_and_update();
                let read = journal.read_after(after, BATCH_RECORDS);
                if let Some(last) = read.records.last() {
                    after = last.seq;
                    let batch = JournalBatch {
                        records: read.records,
                        missed: read.missed,
                    };
                    return Some((Ok(sse::event("journal", &batch)), (after, changes)));
                }
                match tokio::time::timeout(sse::KEEPALIVE_INTERVAL, changes.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return None,
                    Err(_silent) => {
                        return Some((Ok(Bytes::from_static(sse::KEEPALIVE)), (after, changes)));
                    }
                }
            }
        },
    )
}
