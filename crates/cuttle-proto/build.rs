//! Compiles `proto/cuttle/v1/*.proto` into Rust with protox (a pure-Rust protobuf
//! compiler), so building needs no system `protoc`.

use std::path::PathBuf;

/// The protos, relative to this package's root (a build script's working directory).
const PROTO_ROOT: &str = "../../proto";
const FILES: [&str; 6] = [
    "cuttle/v1/admin.proto",
    "cuttle/v1/dispatch.proto",
    "cuttle/v1/health.proto",
    "cuttle/v1/nodes.proto",
    "cuttle/v1/runs.proto",
    "cuttle/v1/suites.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in FILES {
        // Relative on purpose: cargo resolves a relative path against the package root of
        // the checkout being built. An absolute path would tie a shared target directory
        // to whichever checkout built it first, and another checkout's proto changes
        // would never recompile.
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }
    let descriptors = protox::compile(FILES, [PROTO_ROOT])?;
    // Kept, with comments, for the generated API reference (see src/apidoc.rs).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("cuttle_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
