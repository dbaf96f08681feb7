// Rule: a query or mutation returns `Result<Output, Error>`.
use alknet::operation;

#[operation(mutation, name = "ui/reset")]
async fn reset() -> bool {
    true
}

fn main() {}
