//! Timestamps on the wire: epoch milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as sent in `created_at`, `timestamp`, ….
pub type EpochMillis = i64;

/// The current time in epoch milliseconds (0 if the clock is before 1970).
pub fn now_millis() -> EpochMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The OpenAPI schema of an [`EpochMillis`] field (component `EpochMillis`).
///
/// [`EpochMillis`] is an alias of `i64`, which the schema derive cannot tell from any other
/// integer; fields name this type in `#[schema(value_type = ...)]` so the document marks every
/// timestamp, and the SDK checks can expect a date where it points.
pub struct EpochMillisSchema;

impl utoipa::PartialSchema for EpochMillisSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("Milliseconds since the Unix epoch."))
            .into()
    }
}

impl utoipa::ToSchema for EpochMillisSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("EpochMillis")
    }
}
