// Rule: a resource id is a JSON Pointer into the input.
use alknet::{CallError, operation};

#[operation(query, name = "ui/get", resource(type = "thing", action = "read", id = "thingId"))]
async fn get() -> Result<String, CallError> {
    Ok("thing".into())
}

fn main() {}
