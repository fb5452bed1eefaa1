//! `walctl dump`: not built yet (see its issue).

use super::Exit;

/// Options of `walctl dump`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Exit> {
    anyhow::bail!("`walctl dump` is not built yet")
}
