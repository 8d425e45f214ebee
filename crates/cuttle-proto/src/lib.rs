//! cuttle's wire format: the Rust code generated from `proto/cuttle/v1`, and the one module
//! ([`convert`]) that turns it into cuttle-core types and back.
//!
//! prost types must never leak past the daemons' gRPC edges: everything inside a daemon
//! works on cuttle-core types.

pub mod apidoc;
pub mod bearer;
pub mod convert;
pub mod endpoint;

/// The most jobs one `LockNodesBatch` or `RecordDispatches` call may name (the protos
/// say so): cuttle-api refuses more, and a client with more sends several calls.
pub const MAX_BATCH_JOBS: usize = 1000;

/// The compiled `proto/cuttle/v1` descriptors, with their comments.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cuttle_descriptor.bin"));

/// Generated messages, clients and servers of package `cuttle.v1`.
#[allow(
    missing_debug_implementations,
    reason = "generated gRPC clients and servers"
)]
#[allow(clippy::all, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("cuttle.v1");
}
