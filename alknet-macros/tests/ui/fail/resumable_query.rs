use alknet::{CallError, operation};

/// Only subscriptions resume.
#[operation(query, name = "demo/count", resumable)]
async fn count(input: u64) -> Result<u64, CallError> {
    Ok(input)
}

fn main() {}
