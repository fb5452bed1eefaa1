//! The `walctl` binary: a thin clap front end over the walctl library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
