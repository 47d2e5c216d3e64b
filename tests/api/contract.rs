//! The published contract: `proto/promised.desc` is the FileDescriptorSet the server is built
//! from (for `grpcurl -protoset` and connectors that take descriptors), kept current.

use promised::grpc::pb;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/promised.desc");

/// Set to rewrite the committed copy from the protos after changing them.
const WRITE: &str = "PROMISED_WRITE_DESCRIPTORS";

#[test]
fn the_committed_descriptor_set_is_the_one_built_from_the_protos() {
    if std::env::var_os(WRITE).is_some() {
        std::fs::write(COMMITTED, pb::FILE_DESCRIPTOR_SET).expect("write proto/promised.desc");
    }
    let committed = std::fs::read(COMMITTED).unwrap_or_default();
    assert!(
        committed == pb::FILE_DESCRIPTOR_SET,
        "proto/promised.desc is not what proto/ builds: run \
         `{WRITE}=1 cargo test --test api contract::` and commit it"
    );
}
