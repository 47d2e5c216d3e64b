//! Generates the peers' gRPC code from `proto/peer.proto` with a pure-Rust protobuf
//! compiler (protox), as the service's own build script does: no system `protoc`.

const PROTO_DIR: &str = "proto";
const PROTO_FILES: &[&str] = &["proto/peer.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTO_FILES, [PROTO_DIR])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    Ok(())
}
