//! Compiles `proto/cuttle/v1/*.proto` into Rust with protox (a pure-Rust protobuf
//! compiler), so building needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "cuttle/v1/health.proto",
        "cuttle/v1/nodes.proto",
        "cuttle/v1/runs.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
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
