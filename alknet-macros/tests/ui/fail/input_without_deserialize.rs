// Rule: the input implements Deserialize.
use alknet::{CallError, operation};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Serialize, JsonSchema)]
struct Point {
    x: i64,
}

#[operation(query, name = "ui/norm")]
async fn norm(input: Point) -> Result<i64, CallError> {
    Ok(input.x)
}

fn main() {}
