// Rule: each option is given once.
use alknet::{CallError, operation};

#[operation(query, name = "ui/a", name = "ui/b")]
async fn hello() -> Result<String, CallError> {
    Ok("hello".into())
}

fn main() {}
