//! `walctl verify`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl verify`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl verify` is not built yet")
}
