//! Prints the OpenAPI document of `alcove serve` (the committed
//! `docs/protocol/openapi.json`):
//!
//! ```sh
//! cargo run -q -p alcove-server --example openapi > docs/protocol/openapi.json
//! ```

fn main() {
    print!("{}", alcove_server::api::openapi::json());
}
