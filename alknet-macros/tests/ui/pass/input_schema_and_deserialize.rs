// Rules: the input implements JsonSchema and Deserialize (and Serialize, for callers).
use alknet::{CallError, operation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema)]
struct Point {
    x: i64,
    y: i64,
}

#[operation(query, name = "ui/norm")]
async fn norm(input: Point) -> Result<i64, CallError> {
    Ok(input.x.abs() + input.y.abs())
}

fn main() {
    let _ = NormOp;
}
