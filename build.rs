//! Generates the gRPC code from `proto/promised/v1/*.proto` with a pure-Rust protobuf compiler
//! (protox), so building needs no system `protoc`. The file descriptor set is also written out
//! for gRPC server reflection.

use std::path::PathBuf;

const PROTO_DIR: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "proto/promised/v1/network.proto",
    "proto/promised/v1/admin.proto",
    "proto/promised/v1/supply.proto",
    "proto/promised/v1/availability.proto",
    "proto/promised/v1/reservations.proto",
    "proto/promised/v1/promising.proto",
    "proto/promised/v1/routing.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTO_FILES, [PROTO_DIR])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("promised_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    Ok(())
}
