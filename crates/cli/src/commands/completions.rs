//! `alcove completions SHELL` and `alcove man`: generated from the command line's definition,
//! so they never drift from it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;

/// `alcove completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove completions bash > /etc/bash_completion.d/alcove
  alcove completions zsh > \"${fpath[1]}/_alcove\"
  alcove completions fish > ~/.config/fish/completions/alcove.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// `alcove man`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove man | man -l -
  alcove man --dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write one page per command (alcove.1, alcove-sandbox.1, …) into this directory instead of
    /// printing the main page.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Prints the completion script.
pub fn completions(args: CompletionsArgs, mut command: Command) -> anyhow::Result<()> {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(())
}

/// Prints or writes the man pages.
pub fn man(args: ManArgs, command: Command) -> anyhow::Result<()> {
    match args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command).render(&mut out)?;
            std::io::stdout().write_all(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("man pages written to {}", dir.display());
        }
    }
    Ok(())
}
