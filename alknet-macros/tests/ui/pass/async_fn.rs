// Rule: the function is async.
use alknet::{CallError, operation};

/// Says hello.
#[operation(query, name = "ui/hello")]
async fn hello() -> Result<String, CallError> {
    Ok("hello".into())
}

fn main() {
    let _ = HelloOp;
}
