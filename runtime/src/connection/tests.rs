//! Unit tests of dispatch, deadlines, aborts and cascades over an in-memory pair: no QUIC, no
//! sockets, each test in milliseconds. The QUIC and WebSocket transports run the same code
//! (`runtime/tests/protocol.rs` covers them over real QUIC).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alknet_spec::{AccessControl, OpType, OperationSpec, Visibility};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Connection, PairOptions};
use crate::error::CallError;
use crate::identity::Identity;
use crate::peer::CallOptions;
use crate::registry::{Composition, Handler, Registry};

/// Counts the handlers that started and the ones whose future was dropped before finishing.
#[derive(Clone, Default)]
struct Probe {
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Probe {
    fn guard(&self) -> DropGuard {
        self.started.fetch_add(1, Ordering::SeqCst);
        DropGuard(Arc::clone(&self.dropped))
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Waits (up to a second) until `n` handlers were dropped.
    async fn until_dropped(&self, n: usize) {
        let end = Instant::now() + Duration::from_secs(1);
        while self.dropped() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(self.dropped(), n, "handlers dropped");
    }
}

/// Counts a drop unless disarmed.
struct DropGuard(Arc<AtomicUsize>);

impl DropGuard {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn spec(name: &str, op_type: OpType) -> OperationSpec {
    OperationSpec::new(name, op_type).unwrap()
}

/// A query that takes 30 s and tells `probe` when it starts and when it is dropped unfinished.
fn slow_handler(probe: &Probe) -> Handler {
    let probe = probe.clone();
    Handler::unary(move |_ctx, _input: Value| {
        let guard = probe.guard();
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            guard.disarm();
            Ok(json!("finished"))
        }
    })
}

fn scoped(scope: &str) -> AccessControl {
    AccessControl {
        required_scopes: vec![scope.into()],
        ..AccessControl::default()
    }
}

/// The serving side's operations: echo, a scoped echo, an internal one, a slow one that
/// records being dropped, a subscription, a composer and a peer-composer.
fn server_registry(probe: &Probe) -> Registry {
    let mut registry = Registry::new();
    let object_with_n = json!({
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": false
    });
    registry
        .register_handler(
            spec("t/echo", OpType::Query).with_input_schema(object_with_n.clone()),
            Handler::unary(|_ctx, input: Value| async move { Ok(input) }),
        )
        .unwrap();
    registry
        .register_handler(
            spec("t/admin", OpType::Mutation)
                .with_input_schema(object_with_n.clone())
                .with_access(scoped("admin")),
            Handler::unary(|ctx, input: Value| async move {
                Ok(json!({"who": ctx.identity().map(|i| i.id.clone()), "input": input}))
            }),
        )
        .unwrap();
    registry
        .register_handler(
            spec("t/hidden", OpType::Query).with_visibility(Visibility::Internal),
            Handler::unary(|_ctx, _input: Value| async move { Ok(json!("hidden")) }),
        )
        .unwrap();
    registry
        .register_handler(spec("t/slow", OpType::Query), slow_handler(probe))
        .unwrap();
    let ticks = probe.clone();
    registry
        .register_handler(
            spec("t/ticks", OpType::Subscription).with_input_schema(json!({"type": "object"})),
            Handler::subscription(move |_ctx, input: Value| {
                let guard = ticks.guard();
                async move {
                    let count = input["count"].as_u64().unwrap_or(u64::MAX);
                    Ok(futures_util::stream::unfold(
                        (0u64, Some(guard)),
                        move |(n, mut guard)| async move {
                            if n == count {
                                if let Some(guard) = guard.take() {
                                    guard.disarm();
                                }
                                return None;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            Some((Ok(json!({"n": n + 1})), (n + 1, guard)))
                        },
                    ))
                }
            }),
        )
        .unwrap();
    registry
        .register_handler(
            spec("t/panic", OpType::Query),
            Handler::unary(|_ctx, _input: Value| async move {
                if true {
                    panic!("boom");
                }
                Ok(Value::Null)
            }),
        )
        .unwrap();
    // Calls `t/slow` and `t/hidden` on this node, under its own authority.
    registry
        .register_composed(
            spec("t/compose", OpType::Query),
            Handler::unary(|ctx, input: Value| async move {
                let env = ctx.env();
                if input["hidden"] == json!(true) {
                    return env.call_json("t/hidden", json!({})).await;
                }
                if input["forbidden"] == json!(true) {
                    return env.call_json("t/echo", json!({"n": 1})).await;
                }
                env.call_json("t/slow", json!({})).await
            }),
            Composition::new(
                Identity::new("composer", ["internal"]),
                ["t/slow", "t/hidden"],
            ),
        )
        .unwrap();
    // Calls `c/slow` on the caller's side of the connection.
    registry
        .register_composed(
            spec("t/ask_back", OpType::Query),
            Handler::unary(|ctx, _input: Value| async move {
                ctx.env().call_peer_json("c/slow", json!({})).await
            }),
            Composition::new(Identity::new("composer", ["internal"]), ["c/slow"]),
        )
        .unwrap();
    registry
}

/// The calling side's operations (the server may call them): `c/name`, and `c/slow` which
/// records being dropped.
fn client_registry(probe: &Probe) -> Registry {
    let mut registry = Registry::new();
    registry
        .register_handler(
            spec("c/name", OpType::Query),
            Handler::unary(|_ctx, _input: Value| async move { Ok(json!("left")) }),
        )
        .unwrap();
    registry
        .register_handler(spec("c/slow", OpType::Query), slow_handler(probe))
        .unwrap();
    registry
}

struct Pair {
    client: Connection,
    server: Connection,
    server_probe: Probe,
    client_probe: Probe,
}

fn pair_with(options: PairOptions) -> Pair {
    let (server_probe, client_probe) = (Probe::default(), Probe::default());
    let (client, server) = Connection::pair_with(
        client_registry(&client_probe),
        server_registry(&server_probe),
        options,
    );
    Pair {
        client,
        server,
        server_probe,
        client_probe,
    }
}

fn pair() -> Pair {
    pair_with(PairOptions::default())
}

fn code(result: Result<Value, CallError>) -> String {
    result.expect_err("expected an error").code
}

#[tokio::test]
async fn calls_in_both_directions() {
    let pair = pair();
    assert_eq!(
        pair.client
            .call_json("t/echo", json!({"n": 7}))
            .await
            .unwrap(),
        json!({"n": 7})
    );
    assert_eq!(
        pair.server.call_json("/c/name", json!({})).await.unwrap(),
        json!("left")
    );
}

#[tokio::test]
async fn dispatch_order_lookup_access_validation_kind() {
    let pair = pair();
    let client = &pair.client;
    // Lookup first: unknown and internal operations do not exist for a caller.
    assert_eq!(
        code(client.call_json("t/nope", json!({})).await),
        "NOT_FOUND"
    );
    assert_eq!(
        code(client.call_json("t/hidden", json!({})).await),
        "NOT_FOUND"
    );
    assert_eq!(
        code(client.call_json("not a name", json!({})).await),
        "NOT_FOUND"
    );
    // Access before validation: an anonymous caller with bad input is told to authenticate.
    let error = client
        .call_json("t/admin", json!({"wrong": true}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "FORBIDDEN");
    assert_eq!(error.message, "authentication required");
    // Validation before the kind check: bad input to a subscription called as a query.
    let error = client
        .call_json("t/ticks", json!("not an object"))
        .await
        .unwrap_err();
    assert_eq!(error.code, "INVALID_INPUT");
    let error = client
        .call_json("t/echo", json!({"n": "seven"}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "INVALID_INPUT");
    assert_eq!(error.details.unwrap()["pointer"], "/n");
    // The kind check, both ways.
    assert_eq!(
        code(client.call_json("t/ticks", json!({"count": 1})).await),
        "INVALID_OPERATION_TYPE"
    );
    let mut items = client
        .subscribe_json("t/echo", json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(
        items.next().await.unwrap().unwrap_err().code,
        "INVALID_OPERATION_TYPE"
    );
    assert!(
        items.next().await.is_none(),
        "an error ends the subscription"
    );
}

#[tokio::test]
async fn the_connection_identity_decides_access() {
    let admin = Identity::new("root", ["admin"]);
    let pair = pair_with(PairOptions {
        left_identity: Some(admin),
        ..PairOptions::default()
    });
    let answer = pair
        .client
        .call_json("t/admin", json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(answer["who"], "root");
    // The other direction has no identity: the client's registry sees an anonymous server.
    let anonymous = pair_with(PairOptions::default());
    let error = anonymous
        .client
        .call_json("t/admin", json!({"n": 1}))
        .await
        .unwrap_err();
    assert_eq!(error.message, "authentication required");
}

#[tokio::test]
async fn a_deadline_answers_timeout_and_drops_the_handler() {
    let pair = pair();
    let started = Instant::now();
    let error = pair
        .client
        .call_json_with(
            "t/slow",
            json!({}),
            CallOptions::timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
    pair.server_probe.until_dropped(1).await;
    // The connection still serves.
    assert!(
        pair.client
            .call_json("t/echo", json!({"n": 1}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_subscription_deadline_ends_it_and_drops_the_stream() {
    let pair = pair();
    let mut items = pair
        .client
        .subscribe_json_with(
            "t/ticks",
            json!({}),
            CallOptions::timeout(Duration::from_millis(30)),
        )
        .await
        .unwrap();
    let mut last = None;
    while let Some(item) = items.next().await {
        last = Some(item);
    }
    assert_eq!(last.unwrap().unwrap_err().code, "TIMEOUT");
    pair.server_probe.until_dropped(1).await;
}

#[tokio::test]
async fn dropping_a_call_aborts_the_handler() {
    let pair = pair();
    let call = pair.client.call_json("t/slow", json!({}));
    // Poll long enough for the request to start on the other side, then drop the future.
    let _ = tokio::time::timeout(Duration::from_millis(20), call).await;
    pair.server_probe.until_dropped(1).await;
    assert_eq!(pair.server_probe.started(), 1);
}

#[tokio::test]
async fn dropping_a_subscription_aborts_its_stream() {
    let pair = pair();
    let mut items = pair
        .client
        .subscribe_json("t/ticks", json!({}))
        .await
        .unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), json!({"n": 1}));
    drop(items);
    pair.server_probe.until_dropped(1).await;
}

#[tokio::test]
async fn a_finite_subscription_completes() {
    let pair = pair();
    let items: Vec<_> = pair
        .client
        .subscribe_json("t/ticks", json!({"count": 3}))
        .await
        .unwrap()
        .collect()
        .await;
    let items: Vec<Value> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        items,
        vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );
    assert_eq!(pair.server_probe.dropped(), 0);
}

#[tokio::test]
async fn aborting_a_composer_aborts_its_local_child() {
    let pair = pair();
    let call = pair.client.call_json("t/compose", json!({}));
    let _ = tokio::time::timeout(Duration::from_millis(20), call).await;
    // `t/slow`, called by `t/compose` through its env, is dropped with its parent.
    pair.server_probe.until_dropped(1).await;
}

#[tokio::test]
async fn aborting_a_composer_aborts_its_child_across_the_connection() {
    let pair = pair();
    // client → t/ask_back on the server → c/slow back on the client.
    let call = pair.client.call_json("t/ask_back", json!({}));
    let _ = tokio::time::timeout(Duration::from_millis(30), call).await;
    assert_eq!(
        pair.client_probe.started(),
        1,
        "the child reached the client"
    );
    pair.client_probe.until_dropped(1).await;
}

#[tokio::test]
async fn a_child_inherits_its_parents_deadline() {
    let pair = pair();
    let started = Instant::now();
    let error = pair
        .client
        .call_json_with(
            "t/compose",
            json!({}),
            CallOptions::timeout(Duration::from_millis(40)),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
    pair.server_probe.until_dropped(1).await;
}

#[tokio::test]
async fn compositions_reach_listed_internal_operations_only() {
    let pair = pair();
    assert_eq!(
        pair.client
            .call_json("t/compose", json!({"hidden": true}))
            .await
            .unwrap(),
        json!("hidden")
    );
    // `t/echo` is public but not on the allow-list: it does not exist for the composer.
    assert_eq!(
        code(
            pair.client
                .call_json("t/compose", json!({"forbidden": true}))
                .await
        ),
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn a_panic_is_an_internal_error_and_the_connection_lives_on() {
    let pair = pair();
    let error = pair
        .client
        .call_json("t/panic", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "INTERNAL");
    assert_eq!(
        pair.client
            .call_json("t/echo", json!({"n": 2}))
            .await
            .unwrap(),
        json!({"n": 2})
    );
}

#[tokio::test]
async fn closing_one_half_fails_the_others_pending_calls() {
    let pair = pair();
    let client = pair.client.clone();
    let pending = tokio::spawn(async move { client.call_json("t/slow", json!({})).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    pair.server.close();
    let error = pending.await.unwrap().unwrap_err();
    assert_eq!(error.code, "INTERNAL");
    assert_eq!(error.message, "connection closed");
    pair.server_probe.until_dropped(1).await;
}
