//! The types `alknet-codegen` generates from `shapes.json`; `tests/roundtrip.rs` parses valid
//! and invalid documents with them.

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/shapes.rs"));
