//! Compiles `proto/*.proto` with protox (pure Rust, so no `protoc` is needed)
//! and writes the descriptor set that gRPC reflection serves.

use prost::Message;
use std::{env, fs, io, path::PathBuf};

const PROTOS: [&str; 4] = ["errors.proto", "users.proto", "inventory.proto", "orders.proto"];

fn main() -> io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let fds = protox::compile(PROTOS, [&root]).map_err(io::Error::other)?;
    let out = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    fs::write(out.join("shop_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)
}
