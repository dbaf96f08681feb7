// Rule: domain error codes are UPPER_SNAKE_CASE and not protocol codes.
use alknet::DomainError;

#[derive(Debug, DomainError)]
enum Failure {
    /// Not enough.
    #[domain(code = "NOT_ENOUGH", status = 409)]
    NotEnough,
}

fn main() {
    let _ = Failure::NotEnough;
}
