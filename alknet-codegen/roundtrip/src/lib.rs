//! The types `alknet-codegen` generates from `shapes.json` (and `formats.json`, with typed
//! formats); `tests/roundtrip.rs` parses valid and invalid documents with them.

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/shapes.rs"));

/// `formats.json`, generated with `Builder::typed_formats`.
pub mod formats {
    include!(concat!(env!("OUT_DIR"), "/formats.rs"));
}
