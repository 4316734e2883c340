//! The gRPC API's messages and services (`proto/incident_manager/v1`), generated at build
//! time; DESIGN §8.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    tonic::include_proto!("incident_manager.v1");
}

/// The protobuf well-known types the messages use (`Timestamp`).
pub use prost_types;

/// The encoded file descriptors of every message and service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
