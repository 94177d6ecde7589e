//! Rust client of WIRE.md (not built yet: the Python SDK is the first client).
