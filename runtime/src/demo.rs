//! The demo service behind `alknet serve --demo`, used by the README, the tests and the
//! benchmarks.
//!
//! | operation | kind | what it does |
//! |---|---|---|
//! | `demo/echo` | query | returns its input |
//! | `demo/add` | query | `{a, b}` → `{sum}` |
//! | `demo/ticks` | subscription | `{count, interval_ms}` → items `{n}` for n = 1..=count, then completes |
//! | `demo/sleep` | query | `{ms}` → `{slept_ms}` after sleeping; stops at once when aborted |
//! | `demo/fail` | mutation | always fails with the declared domain error `DEMO_FAILED` (HTTP 409) |
//! | `demo/secret` | query, internal | reachable only by composition; `NOT_FOUND` from outside |
//! | `demo/whoami` | query | the caller's `{id, scopes}`, or `null` when anonymous |
//! | `demo/admin` | mutation | needs scope `admin`; answers `{ok, by}` |
//! | `demo/compose` | query | `{a, b, c}` → `{sum, secret}`: calls `demo/add` twice and the internal `demo/secret` through its env, as its own authority `demo/compose` |
//! | `demo/ask_peer` | query | asks the caller's side of the connection (`client/name`) and answers `{peer_says}` |

use std::time::Duration;

use alknet_spec::{AccessControl, ErrorSpec, OpType, OperationSpec, Visibility};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::CallError;
use crate::identity::Identity;
use crate::registry::{Composition, Handler, Registry, RegistryError};

/// The largest `count` `demo/ticks` accepts.
pub const MAX_TICKS: u64 = 10_000_000;
/// The longest `demo/sleep` accepts, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 600_000;

#[derive(Deserialize)]
struct AddInput {
    a: serde_json::Number,
    b: serde_json::Number,
}

#[derive(Serialize)]
struct AddOutput {
    sum: serde_json::Number,
}

/// Integers add exactly (`1 + 2` is `3`, not `3.0`); anything else adds as floating point.
fn add(a: &serde_json::Number, b: &serde_json::Number) -> Result<serde_json::Number, CallError> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64())
        && let Some(sum) = a.checked_add(b)
    {
        return Ok(sum.into());
    }
    let sum = a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN);
    serde_json::Number::from_f64(sum)
        .ok_or_else(|| CallError::invalid_input("the sum is not a finite number", ""))
}

#[derive(Deserialize)]
struct TicksInput {
    count: u64,
    #[serde(default)]
    interval_ms: u64,
}

#[derive(Serialize)]
struct Tick {
    n: u64,
}

#[derive(Deserialize)]
struct SleepInput {
    ms: u64,
}

#[derive(Serialize)]
struct SleepOutput {
    slept_ms: u64,
}

#[derive(Deserialize)]
struct FailInput {
    #[serde(default)]
    reason: Option<String>,
}

fn spec(name: &str, op_type: OpType, description: &str) -> OperationSpec {
    OperationSpec::new(name, op_type)
        .expect("demo names are valid")
        .with_description(description)
}

/// Registers the demo operations into `registry`.
pub fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register(
        spec("demo/echo", OpType::Query, "Returns its input unchanged.")
            .with_input_schema(json!(true))
            .with_output_schema(json!(true)),
        Handler::unary(|_ctx, input| async move { Ok(input) }),
    )?;

    registry.register(
        spec("demo/add", OpType::Query, "Adds two numbers.")
            .with_input_schema(json!({
                "type": "object",
                "required": ["a", "b"],
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "additionalProperties": false
            }))
            .with_output_schema(json!({
                "type": "object",
                "required": ["sum"],
                "properties": {"sum": {"type": "number"}}
            })),
        Handler::typed_unary(|_ctx, input: AddInput| async move {
            Ok(AddOutput {
                sum: add(&input.a, &input.b)?,
            })
        }),
    )?;

    registry.register(
        spec(
            "demo/ticks",
            OpType::Subscription,
            "Emits `count` ticks `{n}` (n = 1..=count), `interval_ms` apart, then completes.",
        )
        .with_input_schema(json!({
            "type": "object",
            "required": ["count"],
            "properties": {
                "count": {"type": "integer", "minimum": 0, "maximum": MAX_TICKS},
                "interval_ms": {"type": "integer", "minimum": 0, "maximum": 60_000}
            },
            "additionalProperties": false
        }))
        .with_output_schema(json!({
            "type": "object",
            "required": ["n"],
            "properties": {"n": {"type": "integer", "minimum": 1}}
        })),
        Handler::typed_subscription(|_ctx, input: TicksInput| async move {
            let interval = Duration::from_millis(input.interval_ms);
            let ticks = stream::iter(1..=input.count).then(move |n| async move {
                if !interval.is_zero() && n > 1 {
                    tokio::time::sleep(interval).await;
                }
                Ok(Tick { n })
            });
            Ok(ticks)
        }),
    )?;

    registry.register(
        spec(
            "demo/sleep",
            OpType::Query,
            "Sleeps `ms` milliseconds, then answers `{slept_ms}`. Aborting the call stops it.",
        )
        .with_input_schema(json!({
            "type": "object",
            "required": ["ms"],
            "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS}},
            "additionalProperties": false
        }))
        .with_output_schema(json!({
            "type": "object",
            "required": ["slept_ms"],
            "properties": {"slept_ms": {"type": "integer"}}
        })),
        Handler::typed_unary(|_ctx, input: SleepInput| async move {
            // Dropping this future (abort, deadline) ends the sleep: nothing else to clean up.
            tokio::time::sleep(Duration::from_millis(input.ms)).await;
            Ok(SleepOutput { slept_ms: input.ms })
        }),
    )?;

    registry.register(
        spec(
            "demo/fail",
            OpType::Mutation,
            "Always fails with the declared domain error DEMO_FAILED.",
        )
        .with_input_schema(json!({
            "type": "object",
            "properties": {"reason": {"type": "string"}}
        }))
        .with_output_schema(json!({"type": "object"}))
        .with_error(
            ErrorSpec::new(
                "DEMO_FAILED",
                "The demo operation failed, as it always does.",
            )
            .with_http_status(409)
            .with_schema(json!({
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": {"type": "string"}}
            })),
        ),
        Handler::typed_unary(|_ctx, input: FailInput| async move {
            let reason = input.reason.unwrap_or_else(|| "asked to fail".to_owned());
            Err::<(), _>(
                CallError::domain("DEMO_FAILED", "demo/fail failed as designed")
                    .with_details(json!({ "reason": reason })),
            )
        }),
    )?;

    registry.register(
        spec(
            "demo/secret",
            OpType::Query,
            "An internal operation: only other operations may call it.",
        )
        .with_visibility(Visibility::Internal)
        .with_input_schema(json!({"type": "object"}))
        .with_output_schema(json!({
            "type": "object",
            "required": ["secret"],
            "properties": {"secret": {"type": "string"}}
        })),
        Handler::unary(|_ctx, _input| async move { Ok(json!({"secret": "internal only"})) }),
    )?;

    registry.register(
        spec(
            "demo/whoami",
            OpType::Query,
            "Who the node thinks you are: `{id, scopes}`, or null when anonymous.",
        )
        .with_output_schema(json!({
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["id", "scopes"],
                    "properties": {
                        "id": {"type": "string"},
                        "scopes": {"type": "array", "items": {"type": "string"}}
                    }
                }
            ]
        })),
        Handler::unary(|ctx, _input| async move {
            Ok(match ctx.identity() {
                Some(identity) => json!({"id": identity.id, "scopes": identity.scopes}),
                None => json!(null),
            })
        }),
    )?;

    registry.register(
        spec("demo/admin", OpType::Mutation, "Needs the scope `admin`.")
            .with_access(AccessControl {
                required_scopes: vec!["admin".into()],
                ..AccessControl::default()
            })
            .with_output_schema(json!({
                "type": "object",
                "required": ["ok", "by"],
                "properties": {"ok": {"type": "boolean"}, "by": {"type": "string"}}
            })),
        Handler::unary(|ctx, _input| async move {
            let by = ctx.identity().map(|i| i.id.clone()).unwrap_or_default();
            Ok(json!({"ok": true, "by": by}))
        }),
    )?;

    registry.register_composed(
        spec(
            "demo/compose",
            OpType::Query,
            "Adds a + b + c with two nested calls to demo/add, and reads the internal \
             demo/secret: nested calls run as `demo/compose`, not as the caller.",
        )
        .with_input_schema(json!({
            "type": "object",
            "required": ["a", "b", "c"],
            "properties": {
                "a": {"type": "number"}, "b": {"type": "number"}, "c": {"type": "number"}
            }
        }))
        .with_output_schema(json!({
            "type": "object",
            "required": ["sum", "secret"],
            "properties": {"sum": {"type": "number"}, "secret": {"type": "string"}}
        })),
        Handler::unary(|ctx, input| async move {
            let env = ctx.env();
            let first = env
                .call("demo/add", json!({"a": input["a"], "b": input["b"]}))
                .await?;
            let total = env
                .call("demo/add", json!({"a": first["sum"], "b": input["c"]}))
                .await?;
            let secret = env.call("demo/secret", json!({})).await?;
            Ok(json!({"sum": total["sum"], "secret": secret["secret"]}))
        }),
        Composition::new(
            Identity::new("demo/compose", ["demo"]),
            ["demo/add", "demo/secret"],
        ),
    )?;

    registry.register_composed(
        spec(
            "demo/ask_peer",
            OpType::Query,
            "Calls `client/name` on the caller's side of the connection and answers `{peer_says}`.",
        )
        .with_output_schema(json!({
            "type": "object",
            "required": ["peer_says"],
            "properties": {"peer_says": true}
        })),
        Handler::unary(|ctx, _input| async move {
            let answer = ctx.env().call_peer("client/name", json!({})).await?;
            Ok(json!({ "peer_says": answer }))
        }),
        Composition::new(
            Identity::new("demo/ask_peer", Vec::<String>::new()),
            ["client/name"],
        ),
    )?;
    Ok(())
}

/// A registry with the demo service.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry).expect("the demo service is valid");
    registry
}
