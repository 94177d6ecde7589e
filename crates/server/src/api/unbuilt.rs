//! Routes of the protocol that this server does not implement yet: each answers a
//! clear 501 instead of pretending (docs/protocol/control-plane.md, Routes not
//! built; docs/protocol/departures.md).

use axum::extract::Request;
use axum::routing::any;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::error::ApiError;
use super::openapi::tags;

fn answer(what: &'static str) -> impl Fn(Request) -> std::future::Ready<ApiError> + Clone {
    move |_req| std::future::ready(ApiError::not_implemented(what))
}

/// One unbuilt route: its path under `{B}`, what it is, and the methods the protocol gives it
/// with an operation id each. Every method answers 501; the listed ones are documented.
struct Unbuilt {
    path: &'static str,
    what: &'static str,
    operations: &'static [(HttpMethod, &'static str)],
}

/// The unbuilt routes: one table for the router and the OpenAPI document.
const UNBUILT: &[Unbuilt] = &[];

/// The names of the `{…}` segments of `path`.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
}

/// The unbuilt routes, relative to `{B}`, with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new();
    for route in UNBUILT {
        router = router.route(route.path, any(answer(route.what)));
        let not_implemented = ResponseBuilder::new()
            .description(format!(
                "`NOT_IMPLEMENTED`: {} are not implemented by this server yet.",
                route.what
            ))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                    .build(),
            )
            .build();
        for (method, operation_id) in route.operations {
            let mut operation = OperationBuilder::new()
                .operation_id(Some(*operation_id))
                .tag(tags::NOT_IMPLEMENTED)
                .summary(Some(format!("Not implemented ({})", route.what)))
                .response("501", not_implemented.clone());
            for name in path_params(route.path) {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            router.get_openapi_mut().paths.add_path_operation(
                route.path,
                vec![method.clone()],
                operation.build(),
            );
        }
    }
    router
}
