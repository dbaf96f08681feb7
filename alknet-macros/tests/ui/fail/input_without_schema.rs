// Rule: the input implements JsonSchema.
use alknet::{CallError, operation};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Point {
    x: i64,
}

#[operation(query, name = "ui/norm")]
async fn norm(input: Point) -> Result<i64, CallError> {
    Ok(input.x)
}

fn main() {}
