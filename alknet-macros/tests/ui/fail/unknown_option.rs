// Rule: only known options.
use alknet::{CallError, operation};

#[operation(query, name = "ui/hello", colour = "red")]
async fn hello() -> Result<String, CallError> {
    Ok("hello".into())
}

fn main() {}
