//! The `walctl` binary end to end: append, the read commands, the toolbox, the
//! operator's safety rails and `bench`, each run as a child process on real logs.
//! One test binary for the area (the helpers in `tests/common` compile once).

#[path = "../common/mod.rs"]
mod common;

mod bench_cli;
mod cli_append;
mod cli_read;
mod operator_safety;
mod toolbox;
