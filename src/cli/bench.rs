//! `walctl bench`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl bench` is not built yet")
}
