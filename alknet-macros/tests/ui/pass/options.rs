// Rules: a valid name, each option once, only known options. Every option, used once.
use alknet::{CallError, Context, DomainError, Empty, State, operation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema)]
struct Target {
    id: String,
}

struct Config;

#[derive(Debug, DomainError)]
enum Failure {
    /// It broke.
    #[domain(code = "BROKE", status = 409)]
    Broke,
}

/// All the options.
#[operation(
    mutation,
    name = "ui/everything",
    internal,
    deprecated,
    scopes = ["a"],
    scopes_any = ["b", "c"],
    resource(type = "thing", action = "poke", id = "/id"),
    errors = Failure,
    calls = ["ui/other"],
    authority(id = "ui/everything", scopes = ["d"])
)]
async fn everything(_ctx: Context, _config: State<Config>, input: Target) -> Result<Empty, Failure> {
    if input.id.is_empty() {
        return Err(Failure::Broke);
    }
    Ok(Empty {})
}

fn main() {
    let _ = EverythingOp;
}
