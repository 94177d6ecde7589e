//! `alcove __hook ...`: the OCI hook runc runs for every sandbox it starts or
//! restores (see `alcove_runtime::hook`). Not a user command.

use std::io::Read;
use std::process::ExitCode;

use alcove_runtime::hook::{self, HookSpec};

/// Runs the hook with the container state on stdin; exit 1 with a message on
/// stderr (runc shows it in its error) on failure.
pub fn run(args: &[String]) -> ExitCode {
    let result = HookSpec::from_args(args).and_then(|spec| {
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
            eprintln!("alcove hook: {e}");
            ExitCode::FAILURE
        }
    }
}
