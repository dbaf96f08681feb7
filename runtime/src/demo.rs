//! The demo service behind `alknet serve --demo`, used by the README, the tests and the
//! benchmarks. Every operation is declared with `#[operation]`.
//!
//! | operation | kind | what it does |
//! |---|---|---|
//! | `demo/echo` | query | returns its input |
//! | `demo/add` | query | `{a, b}` → `{sum}` |
//! | `demo/ticks` | subscription | `{count, intervalMs}` → items `{n}` for n = 1..=count, then completes |
//! | `demo/sleep` | query | `{ms}` → `{sleptMs}` after sleeping; stops at once when aborted |
//! | `demo/fail` | mutation | always fails with the declared domain error `DEMO_FAILED` (HTTP 409) |
//! | `demo/secret` | query, internal | reachable only by composition; `NOT_FOUND` from outside |
//! | `demo/whoami` | query | the caller's `{id, scopes}`, or `null` when anonymous |
//! | `demo/admin` | mutation | needs scope `admin`; answers `{ok, by}` |
//! | `demo/compose` | query | `{a, b, c}` → `{sum, secret}`: calls `demo/add` twice and the internal `demo/secret` through its env, as its own authority `demo/compose` |
//! | `demo/ask_peer` | query | asks the caller's side of the connection (`client/name`) and answers `{peerSays}` |

use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use crate::error::CallError;
use crate::registry::{Registry, RegistryError};
use crate::{Context, DomainError, Empty, operation};

/// The largest `count` `demo/ticks` accepts. With [`MAX_TICK_INTERVAL_MS`] it bounds a
/// subscription to 5 s, so generic clients (and fuzzers) never wait minutes on the demo.
pub const MAX_TICKS: u64 = 100;
/// The longest pause between ticks, in milliseconds.
pub const MAX_TICK_INTERVAL_MS: u64 = 50;
/// The longest `demo/sleep` accepts, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 2_000;

/// Returns its input unchanged.
#[operation(query, name = "demo/echo")]
pub async fn echo(input: Value) -> Result<Value, CallError> {
    Ok(input)
}

/// Two numbers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddInput {
    /// The first number (|a| ≤ 1e300, so every sum is finite).
    #[schemars(range(min = -1e300, max = 1e300))]
    pub a: Number,
    /// The second number (|b| ≤ 1e300).
    #[schemars(range(min = -1e300, max = 1e300))]
    pub b: Number,
}

/// Their sum.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddOutput {
    /// `a + b`: exact for integers, floating point otherwise.
    pub sum: Number,
}

/// Adds two numbers.
#[operation(query, name = "demo/add")]
pub async fn add(input: AddInput) -> Result<AddOutput, CallError> {
    Ok(AddOutput {
        sum: sum(&input.a, &input.b)?,
    })
}

/// Integers add exactly (`1 + 2` is `3`, not `3.0`); anything else adds as floating point.
fn sum(a: &Number, b: &Number) -> Result<Number, CallError> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64())
        && let Some(sum) = a.checked_add(b)
    {
        return Ok(sum.into());
    }
    let sum = a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN);
    Number::from_f64(sum)
        .ok_or_else(|| CallError::invalid_input("the sum is not a finite number", ""))
}

/// How many ticks, how far apart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TicksInput {
    /// Number of ticks (at most 100).
    #[schemars(range(max = 100))]
    pub count: u64,
    /// Milliseconds between ticks (at most 50).
    #[serde(default)]
    #[schemars(range(max = 50))]
    pub interval_ms: u64,
}

/// One tick.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Tick {
    /// 1 for the first tick.
    pub n: u64,
}

/// Emits `count` ticks `{n}` (n = 1..=count), `intervalMs` apart, then completes. Resumable:
/// after a dropped connection it goes on with tick `n + 1` of the last one received.
#[operation(subscription, name = "demo/ticks", resumable)]
pub async fn ticks(ctx: Context, input: TicksInput) -> impl Stream<Item = Result<Tick, CallError>> {
    let interval = Duration::from_millis(input.interval_ms);
    // Tick n is item n: resuming after item k starts at tick k + 1.
    let after = ctx.resume_after().unwrap_or(0);
    let past_the_end = (after > input.count).then(|| {
        CallError::invalid_input(
            format!(
                "cannot resume after tick {after}: there are only {} ticks",
                input.count
            ),
            "",
        )
    });
    let first = after.saturating_add(1);
    stream::iter(past_the_end.map(Err)).chain(stream::iter(first..=input.count).then(
        move |n| async move {
            if !interval.is_zero() && n > first {
                tokio::time::sleep(interval).await;
            }
            Ok(Tick { n })
        },
    ))
}

/// How long to sleep.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepInput {
    /// Milliseconds (at most 2000).
    #[schemars(range(max = 2_000))]
    pub ms: u64,
}

/// How long it slept.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SleepOutput {
    /// Milliseconds.
    pub slept_ms: u64,
}

/// Sleeps `ms` milliseconds, then answers `{sleptMs}`. Aborting the call stops it.
#[operation(query, name = "demo/sleep")]
pub async fn sleep(input: SleepInput) -> Result<SleepOutput, CallError> {
    // Dropping this future (abort, deadline) ends the sleep: nothing else to clean up.
    tokio::time::sleep(Duration::from_millis(input.ms)).await;
    Ok(SleepOutput { slept_ms: input.ms })
}

/// Why `demo/fail` should fail.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FailInput {
    /// Carried back in the error's details.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The details of `DEMO_FAILED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailDetails {
    /// The reason given in the input.
    pub reason: String,
}

/// The declared errors of `demo/fail`.
#[derive(Debug, Clone, PartialEq, DomainError)]
pub enum DemoError {
    /// The demo operation failed, as it always does.
    #[domain(
        code = "DEMO_FAILED",
        status = 409,
        message = "demo/fail failed as designed"
    )]
    Failed(FailDetails),
}

/// Always fails with the declared domain error DEMO_FAILED.
#[operation(mutation, name = "demo/fail", errors = DemoError)]
pub async fn fail(input: FailInput) -> Result<Empty, DemoError> {
    let reason = input.reason.unwrap_or_else(|| "asked to fail".to_owned());
    Err(DemoError::Failed(FailDetails { reason }))
}

/// The secret.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    /// Only compositions get to read it.
    pub secret: String,
}

/// An internal operation: only other operations may call it.
#[operation(query, name = "demo/secret", internal)]
pub async fn secret() -> Result<Secret, CallError> {
    Ok(Secret {
        secret: "internal only".into(),
    })
}

/// Who a caller is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// The identity's id.
    pub id: String,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// Who the node thinks you are: `{id, scopes}`, or null when anonymous.
#[operation(query, name = "demo/whoami")]
pub async fn whoami(ctx: Context) -> Result<Option<WhoAmI>, CallError> {
    Ok(ctx.identity().map(|identity| WhoAmI {
        id: identity.id.clone(),
        scopes: identity.scopes.clone(),
    }))
}

/// What `demo/admin` did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AdminOutput {
    /// Always true.
    pub ok: bool,
    /// Who did it.
    pub by: String,
}

/// Needs the scope `admin`.
#[operation(mutation, name = "demo/admin", scopes = ["admin"])]
pub async fn admin(ctx: Context) -> Result<AdminOutput, CallError> {
    let by = ctx.identity().map(|i| i.id.clone()).unwrap_or_default();
    Ok(AdminOutput { ok: true, by })
}

/// Three numbers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ComposeInput {
    /// First (|a| ≤ 1e300, so every sum is finite).
    #[schemars(range(min = -1e300, max = 1e300))]
    pub a: Number,
    /// Second (|b| ≤ 1e300).
    #[schemars(range(min = -1e300, max = 1e300))]
    pub b: Number,
    /// Third (|c| ≤ 1e300).
    #[schemars(range(min = -1e300, max = 1e300))]
    pub c: Number,
}

/// The sum, and the secret.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ComposeOutput {
    /// `a + b + c`.
    pub sum: Number,
    /// What `demo/secret` says.
    pub secret: String,
}

/// Adds a + b + c with two nested calls to demo/add, and reads the internal demo/secret:
/// nested calls run as `demo/compose`, not as the caller.
#[operation(
    query,
    name = "demo/compose",
    calls = ["demo/add", "demo/secret"],
    authority(id = "demo/compose", scopes = ["demo"])
)]
pub async fn compose(ctx: Context, input: ComposeInput) -> Result<ComposeOutput, CallError> {
    let env = ctx.env();
    let first = env
        .call::<AddOp>(&AddInput {
            a: input.a,
            b: input.b,
        })
        .await?;
    let total = env
        .call::<AddOp>(&AddInput {
            a: first.sum,
            b: input.c,
        })
        .await?;
    let secret = env.call::<SecretOp>(&Empty {}).await?;
    Ok(ComposeOutput {
        sum: total.sum,
        secret: secret.secret,
    })
}

/// What the peer answered.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerSays {
    /// The answer of `client/name` on the caller's side.
    pub peer_says: Value,
}

/// Calls `client/name` on the caller's side of the connection and answers `{peerSays}`.
#[operation(query, name = "demo/ask_peer", calls = ["client/name"], authority(id = "demo/ask_peer"))]
pub async fn ask_peer(ctx: Context) -> Result<PeerSays, CallError> {
    let answer = ctx.env().call_peer_json("client/name", json!({})).await?;
    Ok(PeerSays { peer_says: answer })
}

/// Registers the demo operations into `registry`.
pub fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register::<EchoOp>()?;
    registry.register::<AddOp>()?;
    registry.register::<TicksOp>()?;
    registry.register::<SleepOp>()?;
    registry.register::<FailOp>()?;
    registry.register::<SecretOp>()?;
    registry.register::<WhoamiOp>()?;
    registry.register::<AdminOp>()?;
    registry.register::<ComposeOp>()?;
    registry.register::<AskPeerOp>()?;
    Ok(())
}

/// A registry with the demo service.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry).expect("the demo service is valid");
    registry
}
