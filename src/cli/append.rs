//! `walctl append`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl append`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl append` is not built yet")
}
