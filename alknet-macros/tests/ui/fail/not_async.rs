// Rule: the function is async.
use alknet::{CallError, operation};

#[operation(query, name = "ui/hello")]
fn hello() -> Result<String, CallError> {
    Ok("hello".into())
}

fn main() {}
