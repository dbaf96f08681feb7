// Rule: a query or mutation returns `Result<Output, Error>`.
use alknet::{CallError, operation};

#[operation(mutation, name = "ui/reset")]
async fn reset() -> Result<bool, CallError> {
    Ok(true)
}

fn main() {
    let _ = ResetOp;
}
