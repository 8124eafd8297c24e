//! Compiles `proto/drover/v1/*.proto` into Rust with no system `protoc`.
//!
//! `protox` (a pure Rust protobuf compiler) parses the files into a
//! `FileDescriptorSet` that keeps source info, so the proto comments become
//! rustdoc and the set can back gRPC reflection. `tonic-prost-build` then
//! generates the prost messages and the tonic clients and servers from it.

use std::error::Error;
use std::path::{Path, PathBuf};

/// Include root: imports and file names are relative to it
/// (`drover/v1/common.proto`).
const PROTO_ROOT: &str = "proto";

/// Directory of the `drover.v1` package, relative to the crate root.
const PACKAGE_DIR: &str = "proto/drover/v1";

/// Name of the encoded descriptor set written to `OUT_DIR`; `lib.rs`
/// includes it as `FILE_DESCRIPTOR_SET`.
const DESCRIPTOR_FILE: &str = "drover_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    // Cargo scans a directory recursively, so this also catches new files.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let files = proto_files(Path::new(PACKAGE_DIR))?;
    // Names relative to the include root, sorted so the output does not
    // depend on directory iteration order.
    let names: Vec<PathBuf> = files
        .iter()
        .map(|file| file.strip_prefix(PROTO_ROOT).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(&names)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join(DESCRIPTOR_FILE),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // BTreeMap keeps map iteration, and so encoding, deterministic: two
        // replicas that encode the same message get the same bytes.
        .btree_map(".")
        // Raft messages and snapshot chunks are passed on without copying.
        .bytes(".")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Every `.proto` file directly in `dir`, sorted by path.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files in {}", dir.display()).into());
    }
    Ok(files)
}
