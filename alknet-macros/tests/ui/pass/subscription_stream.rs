// Rule: a subscription returns `impl Stream<Item = Result<Item, Error>>`.
use alknet::{CallError, operation};
use futures_util::{Stream, stream};

#[operation(subscription, name = "ui/numbers")]
async fn numbers() -> impl Stream<Item = Result<u32, CallError>> {
    stream::iter([Ok(1), Ok(2)])
}

fn main() {
    let _ = NumbersOp;
}
