// Rule: the name has at least two segments of [A-Za-z0-9_-].
use alknet::{CallError, operation};

#[operation(query, name = "hello")]
async fn hello() -> Result<String, CallError> {
    Ok("hello".into())
}

fn main() {}
