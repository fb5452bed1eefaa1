//! `walctl repair`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl repair`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl repair` is not built yet")
}
