//! `alcove-hook`: the OCI `createRuntime` hook runc runs for every sandbox it
//! starts or restores (see `alcove_runtime::hook`).
//!
//! It does what `alcove __hook` does, as a binary of its own: the hook is on the
//! critical path of every start, and the `alcove` binary, with the server, the
//! clients and the console in it, spends about 3 ms of each start just being
//! loaded (the dynamic loader relocates a megabyte of its data). The server runs
//! this one when it is installed next to `alcove`.

use std::io::Read;
use std::process::ExitCode;

use alcove_runtime::hook::{self, HookSpec};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = HookSpec::from_args(&args).and_then(|spec| {
        let mut state = String::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_string(&mut state)
            .map_err(alcove_runtime::RuntimeError::io("reading", "stdin"))?;
        hook::run(&spec, &state)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // runc shows this in its error.
            eprintln!("alcove hook: {e}");
            ExitCode::FAILURE
        }
    }
}
