//! `walctl completions` and `walctl man`: shell completion scripts and a man page,
//! generated from the same clap definition the binary parses with.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Exit};

/// Print a shell completion script.
///
/// Example: walctl completions bash > /etc/bash_completion.d/walctl
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Print the man page (roff).
///
/// Example: walctl man > /usr/local/share/man/man1/walctl.1
#[derive(Debug, clap::Args)]
pub struct ManArgs {}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = super::output::stdout();
    clap_complete::generate(args.shell, &mut cmd, "walctl", &mut out);
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn man(_args: ManArgs) -> anyhow::Result<Exit> {
    let cmd = Cli::command();
    let mut out = super::output::stdout();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    out.flush()?;
    Ok(Exit::Ok)
}
