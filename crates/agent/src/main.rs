//! The `alcove-agent` binary: reads its configuration and runs the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match alcove_agent::AgentConfig::from_env(std::env::vars_os()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("alcove-agent: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("alcove-agent: starting runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(alcove_agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alcove-agent: {err}");
            ExitCode::FAILURE
        }
    }
}
