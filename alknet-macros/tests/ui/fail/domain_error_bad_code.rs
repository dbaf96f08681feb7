// Rule: domain error codes are UPPER_SNAKE_CASE and not protocol codes.
use alknet::DomainError;

#[derive(Debug, DomainError)]
enum Failure {
    #[domain(code = "NOT_FOUND")]
    Missing,
}

fn main() {}
