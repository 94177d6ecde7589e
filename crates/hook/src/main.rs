//! `alcove-hook`: the OCI `createRuntime` hook runc runs for every sandbox it
//! restores, before CRIU restores any process (see `alcove_runtime::hook`; a
//! new sandbox has no hook, the server plumbs it).
//!
//! It does what `alcove __hook` does, as a binary of its own: the hook is on the
//! critical path of every resume and restore, and the `alcove` binary, with the
//! server, the clients and the console in it, spends about 3 ms just being
//! loaded (the dynamic loader relocates a megabyte of its data). The server runs
//! this one when it is installed next to `alcove`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    alcove_runtime::hook::process_main(&args)
}
