//! `walctl checkpoint`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl checkpoint`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl checkpoint` is not built yet")
}
