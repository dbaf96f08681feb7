//! The messages every system carries: the same typed structs, serialized as JSON by each.

use serde::{Deserialize, Serialize};

/// The unary workload's input and output: a short string and a number, echoed back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Echo {
    /// A short text.
    pub msg: String,
    /// A number.
    pub n: u64,
}

/// How many items the stream workload asks for.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Count {
    /// Items to send.
    pub count: u64,
}

/// One small stream item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tick {
    /// 1, 2, 3, …
    pub n: u64,
}

/// The message every unary call sends.
pub fn echo_message(n: u64) -> Echo {
    Echo {
        msg: "hello, benchmark".to_owned(),
        n,
    }
}
