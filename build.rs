//! Generates the Rust type for `proto/wal.proto` with prost-build, compiling the
//! .proto in pure Rust (protox) so that no system `protoc` is ever needed.
//! Without the `proto` feature it does nothing, and prost-build and protox (optional
//! build dependencies) are not built at all.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/wal.proto");
    #[cfg(feature = "proto")]
    {
        let fds = protox::compile(["proto/wal.proto"], ["proto"])?;
        prost_build::Config::new().compile_fds(fds)?;
    }
    Ok(())
}
