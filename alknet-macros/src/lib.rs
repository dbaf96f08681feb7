//! # alknet-macros
//!
//! Home of the code-first path of alknet (design §9): the `#[operation]` attribute that turns an
//! async Rust function into an operation with an `OperationSpec` (from `alknet-spec`), schemas from
//! schemars, and a marker type for typed calls (`conn.call::<AddOp>(input)`).
//!
//! The attribute itself arrives with the `#[operation]` issue. Until then operations are
//! registered by hand with `alknet::Registry` (see the runtime's crate docs), which is also what
//! the macro will expand to.
