//! `walctl segments`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl segments`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl segments` is not built yet")
}
