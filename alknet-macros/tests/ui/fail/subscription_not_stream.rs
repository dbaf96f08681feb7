// Rule: a subscription returns `impl Stream<Item = Result<Item, Error>>`.
use alknet::{CallError, operation};

#[operation(subscription, name = "ui/numbers")]
async fn numbers() -> Result<Vec<u32>, CallError> {
    Ok(vec![1, 2])
}

fn main() {}
