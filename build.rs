//! Generates the Rust type for `proto/wal.proto` with prost-build, compiling the
//! .proto in pure Rust (protox) so that no system `protoc` is ever needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/wal.proto");
    // Only the `proto` feature includes the generated type.
    if std::env::var_os("CARGO_FEATURE_PROTO").is_none() {
        return Ok(());
    }
    let fds = protox::compile(["proto/wal.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
