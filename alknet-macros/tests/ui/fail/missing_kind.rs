// Rule: the kind (query, mutation or subscription) is given.
use alknet::{CallError, operation};

#[operation(name = "ui/hello")]
async fn hello() -> Result<String, CallError> {
    Ok("hello".into())
}

fn main() {}
