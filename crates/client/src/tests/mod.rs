//! Tests of the client against a fake server (real HTTP on loopback, no sandbox).

mod control;
mod fake;
mod follow;
mod get_or_create;
mod images;
mod proxy;
