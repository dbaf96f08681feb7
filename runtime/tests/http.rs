//! The HTTP gateway against a real axum server on loopback: every route, the status mapping,
//! SSE, cancellation on disconnect, WebSocket sessions, and bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alknet::spec::{OpType, OperationSpec};
use alknet::wire::{CallRequested, Event, Message};
use alknet::{
    CallOptions, ConfigIdentities, Handler, Identity, Registry, Server, ServerOptions,
    WebSocketClient, WebSocketOptions,
};
use common::{Probes, test_registry};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const LONG: Duration = Duration::from_secs(5);

struct Gateway {
    _server: Server,
    base: String,
    ws: String,
    probes: Probes,
    http: reqwest::Client,
}

async fn start() -> Gateway {
    let probes = Probes::new();
    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    options.identities = Some(Arc::new(
        ConfigIdentities::default()
            .with_token("alk_admin", Identity::new("admin", ["admin"]))
            .with_token("alk_user", Identity::new("user", ["user"])),
    ));
    options.protocol.max_frame_len = 64 * 1024;
    let mut registry = test_registry(&probes);
    // Subscribes to `client/count` on the caller's side and forwards its items: a subscription
    // from the gateway to a WebSocket peer.
    registry
        .register_handler(
            OperationSpec::new("test/peer_count", OpType::Subscription).unwrap(),
            Handler::subscription(|ctx, input| async move {
                let peer = ctx
                    .peer()
                    .cloned()
                    .ok_or_else(|| alknet::CallError::not_found("no peer"))?;
                peer.subscribe_json("client/count", input).await
            }),
        )
        .unwrap();
    let server = Server::bind(registry, options).unwrap();
    let addr = server
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Gateway {
        _server: server,
        base: format!("http://{addr}"),
        ws: format!("ws://{addr}/alknet/call"),
        probes,
        http: reqwest::Client::new(),
    }
}

impl Gateway {
    async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{path}: every answer is JSON: {text}"
        );
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn call(&self, operation: &str, input: Value, token: Option<&str>) -> (u16, Value) {
        self.post(
            "/call",
            json!({"operation": operation, "input": input}).to_string(),
            token,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_the_status_mapping() {
    let gw = start().await;
    assert_eq!(
        gw.call("demo/add", json!({"a": 1, "b": 2}), None).await,
        (200, json!({"sum": 3}))
    );
    let cases: Vec<(&str, Value, Option<&str>, u16, &str)> = vec![
        ("nope/nothing", json!({}), None, 404, "NOT_FOUND"),
        ("demo/secret", json!({}), None, 404, "NOT_FOUND"),
        (
            "demo/add",
            json!({"a": "x", "b": 1}),
            None,
            422,
            "INVALID_INPUT",
        ),
        (
            "demo/ticks",
            json!({"count": 1}),
            None,
            400,
            "INVALID_OPERATION_TYPE",
        ),
        ("demo/admin", json!({}), None, 401, "FORBIDDEN"),
        ("demo/admin", json!({}), Some("alk_wrong"), 401, "FORBIDDEN"),
        ("demo/admin", json!({}), Some("alk_user"), 403, "FORBIDDEN"),
        ("demo/fail", json!({}), None, 409, "DEMO_FAILED"),
        ("test/undeclared", json!({}), None, 500, "INTERNAL"),
        ("test/panic", json!({}), None, 500, "INTERNAL"),
    ];
    for (op, input, token, status, code) in cases {
        let (got, body) = gw.call(op, input, token).await;
        assert_eq!(
            (got, body["code"].as_str().unwrap()),
            (status, code),
            "{op} {token:?}: {body}"
        );
    }
    let (status, body) = gw.call("demo/add", json!({"a": "x", "b": 1}), None).await;
    assert_eq!((status, &body["details"]), (422, &json!({"pointer": "/a"})));
    assert_eq!(
        gw.call("demo/admin", json!({}), Some("alk_admin")).await,
        (200, json!({"ok": true, "by": "admin"}))
    );
    // Not JSON is 400; a JSON body of the wrong shape is 422.
    let (status, body) = gw.post("/call", "not json", None).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (400, "INVALID_INPUT")
    );
    let (status, _) = gw.post("/call", r#"{"input": 1}"#, None).await;
    assert_eq!(status, 422);
    // The typed per-operation route.
    assert_eq!(
        gw.post("/ops/demo/add", r#"{"a": 2, "b": 3}"#, None).await,
        (200, json!({"sum": 5}))
    );
    assert_eq!(gw.post("/ops/demo/secret", "{}", None).await.0, 404);
    // An output the handler cannot serialize is a 500 INTERNAL, over POST and over SSE.
    let (status, body) = gw.post("/ops/test/unwritable", "{}", None).await;
    assert_eq!((status, body["code"].as_str()), (500, Some("INTERNAL")));
    let text = gw
        .http
        .post(format!("{}/ops/test/unwritable_stream", gw.base))
        .body("{}")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0].2, json!({}));
    assert_eq!(
        (events[1].0.as_str(), events[1].2["code"].as_str()),
        ("error", Some("INTERNAL"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_the_server_keeps_serving() {
    let gw = start().await;
    // Oversized bodies: 413, JSON. The server answers without reading the body and then closes
    // that connection (as HTTP/1.1 must), so this request gets a client of its own: a pooled
    // connection could otherwise be handed to the next request while it closes.
    let response = reqwest::Client::new()
        .post(format!("{}/call", gw.base))
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "INVALID_INPUT");
    // Wrong methods: 405 with Allow, JSON.
    let response = gw
        .http
        .get(format!("{}/call", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(response.headers()["content-type"], "application/json");
    // Unknown routes: 404, JSON.
    let response = gw
        .http
        .get(format!("{}/nope", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "NOT_FOUND");
    // Nothing about internal operations leaks through discovery.
    let listed: Value = gw
        .http
        .get(format!("{}/search", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"demo/add") && !names.contains(&"demo/secret"),
        "{names:?}"
    );
    let schema = gw
        .http
        .get(format!("{}/schema?name=demo/secret", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(schema.status().as_u16(), 404);
    assert_eq!(
        gw.call("demo/add", json!({"a": 1, "b": 1}), None).await.0,
        200
    );
    assert_eq!(
        gw.http
            .get(format!("{}/healthz", gw.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_in_order() {
    let gw = start().await;
    let calls = json!([
        {"operation": "demo/add", "input": {"a": 1, "b": 1}},
        {"operation": "demo/secret"},
        {"operation": "demo/fail", "input": {"reason": "r"}},
        {"operation": "demo/echo", "input": [1, 2]}
    ]);
    let (status, answers) = gw.post("/batch", calls.to_string(), None).await;
    assert_eq!(status, 200);
    assert_eq!(answers[0], json!({"output": {"sum": 2}}));
    assert_eq!(answers[1]["error"]["code"], "NOT_FOUND");
    assert_eq!(answers[2]["error"]["code"], "DEMO_FAILED");
    assert_eq!(answers[3], json!({"output": [1, 2]}));
    // A malformed entry is a malformed request: 422 naming the entry, nothing runs.
    let (status, error) = gw
        .post(
            "/batch",
            r#"[{"operation": "demo/add"}, {"bad": true}]"#,
            None,
        )
        .await;
    assert_eq!(
        (status, &error["details"]),
        (422, &json!({"pointer": "/1"}))
    );
    // Integral floats are integers, as JSON Schema says.
    assert_eq!(
        gw.post("/ops/demo/sleep", r#"{"ms": 5.0}"#, None).await,
        (200, json!({"sleptMs": 5}))
    );
}

/// The events of an SSE body: (event name, id, data).
fn sse_events(text: &str) -> Vec<(String, Option<String>, Value)> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()))
            };
            (
                field("event:").unwrap_or_else(|| "message".into()),
                field("id:"),
                serde_json::from_str(&field("data:").unwrap()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_as_server_sent_events() {
    let gw = start().await;
    let body = json!({"operation": "demo/ticks", "input": {"count": 3}}).to_string();
    let response = gw
        .http
        .post(format!("{}/subscribe", gw.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    let mut expected: Vec<_> = (1..=3)
        .map(|n| ("message".to_owned(), Some(n.to_string()), json!({"n": n})))
        .collect();
    // The end is an event, so a browser can tell it from a dropped connection.
    expected.push(("completed".to_owned(), Some("end".to_owned()), json!({})));
    assert_eq!(events, expected);
    // Items that are ready together are sent together: far fewer body chunks than events.
    let body = json!({"operation": "demo/ticks", "input": {"count": 100}}).to_string();
    let mut chunks = gw
        .http
        .post(format!("{}/subscribe", gw.base))
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let (mut text, mut count) = (String::new(), 0);
    while let Some(chunk) = chunks.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        count += 1;
    }
    let events = sse_events(&text);
    let ids: Vec<_> = events.iter().filter_map(|e| e.1.clone()).collect();
    let expected_ids: Vec<_> = (1..=100)
        .map(|n: u32| n.to_string())
        .chain(["end".to_owned()])
        .collect();
    assert_eq!(ids, expected_ids);
    assert!(count < 20, "101 events came in {count} chunks");
    // GET, for EventSource.
    let response = gw
        .http
        .get(format!(
            "{}/subscribe?operation=demo/ticks&input=%7B%22count%22%3A2%7D",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(sse_events(&response.text().await.unwrap()).len(), 3);
    // An EventSource reconnecting after the end is told to stop (204); one whose connection
    // dropped resumes a resumable subscription after the last id it saw (demo/ticks: tick n is
    // item n), ids going on from there.
    let reconnect = |op: &'static str, last: &'static str| {
        gw.http
            .get(format!(
                "{}/subscribe?operation={op}&input=%7B%22count%22%3A4%7D",
                gw.base
            ))
            .header("Last-Event-ID", last)
            .send()
    };
    assert_eq!(reconnect("demo/ticks", "end").await.unwrap().status(), 204);
    let resumed = reconnect("demo/ticks", "2").await.unwrap();
    assert_eq!(resumed.status(), 200);
    assert_eq!(
        sse_events(&resumed.text().await.unwrap()),
        [
            ("message".to_owned(), Some("3".to_owned()), json!({"n": 3})),
            ("message".to_owned(), Some("4".to_owned()), json!({"n": 4})),
            ("completed".to_owned(), Some("end".to_owned()), json!({})),
        ]
    );
    // A resume point past the end is the handler's to refuse: an error event, nothing more.
    let past = sse_events(
        &reconnect("demo/ticks", "9")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(past.len(), 1, "{past:?}");
    assert_eq!(
        (past[0].0.as_str(), &past[0].2["code"]),
        ("error", &json!("INVALID_INPUT"))
    );
    // A Last-Event-ID that is not a number is refused; so is resuming what cannot resume —
    // never a replay.
    let garbled = reconnect("demo/ticks", "three").await.unwrap();
    assert_eq!(garbled.status(), 400);
    let refused = reconnect("test/fail_stream", "1").await.unwrap();
    assert_eq!(refused.status(), 422);
    let error: Value = refused.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("not resumable"),
        "{error}"
    );
    // The typed route of a subscription answers SSE too.
    let response = gw
        .http
        .post(format!("{}/ops/demo/ticks", gw.base))
        .body(r#"{"count": 4}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(sse_events(&response.text().await.unwrap()).len(), 5);
    // An error mid-stream is `event: error` and ends the stream.
    let body = json!({"operation": "test/fail_stream", "input": {}}).to_string();
    let text = gw
        .http
        .post(format!("{}/subscribe", gw.base))
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 3, "nothing follows the error: {events:?}");
    assert_eq!(events[2].0, "error");
    assert_eq!(events[2].1.as_deref(), Some("end"));
    assert_eq!(events[2].2["code"], "STREAM_BROKE");
    // Failing to start is a plain error answer.
    let body = json!({"operation": "demo/add", "input": {"a": 1, "b": 1}}).to_string();
    let (status, error) = gw.post("/subscribe", body, None).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (400, "INVALID_OPERATION_TYPE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_handler() {
    let gw = start().await;
    // An SSE subscription: read one event, then drop the response (close the connection).
    let body = json!({"operation": "test/forever", "input": {}}).to_string();
    let response = gw
        .http
        .post(format!("{}/subscribe", gw.base))
        .body(body)
        .send()
        .await
        .unwrap();
    let mut chunks = response.bytes_stream();
    assert!(chunks.next().await.unwrap().unwrap().starts_with(b"id: 1"));
    drop(chunks);
    assert!(
        gw.probes.forever.wait_for(1, LONG).await,
        "the subscription stopped"
    );
    // A slow call whose client gives up.
    let slow = gw
        .http
        .post(format!("{}/call", gw.base))
        .body(json!({"operation": "test/slow", "input": {"ms": 30_000}}).to_string())
        .send();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), slow)
            .await
            .is_err()
    );
    assert!(
        gw.probes.slow.wait_for(1, LONG).await,
        "the handler was dropped"
    );
}

fn envelope(message: &Message) -> WsMessage {
    WsMessage::Binary(message.to_json_bytes().into())
}

fn requested(id: &str, op: &str, input: Value) -> Message {
    Message::new(
        id,
        Event::Requested(CallRequested {
            operation_id: op.into(),
            input,
            auth_token: None,
            timeout_ms: None,
            stream: None,
            item_batches: false,
            resume_after: None,
        }),
    )
}

async fn next_message(
    ws: &mut (impl StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Message {
    loop {
        match tokio::time::timeout(LONG, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WsMessage::Binary(bytes) => return Message::decode(&bytes).unwrap(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_speak_the_call_protocol() {
    let gw = start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&gw.ws).await.unwrap();
    ws.send(envelope(&requested(
        "1",
        "/demo/add",
        json!({"a": 2, "b": 2}),
    )))
    .await
    .unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::new("1", Event::Responded(json!({"sum": 4})))
    );
    ws.send(envelope(&requested(
        "2",
        "/demo/ticks",
        json!({"count": 2}),
    )))
    .await
    .unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::new("2", Event::Responded(json!({"n": 1})))
    );
    assert_eq!(
        next_message(&mut ws).await,
        Message::new("2", Event::Responded(json!({"n": 2})))
    );
    assert_eq!(
        next_message(&mut ws).await,
        Message::new("2", Event::Completed)
    );
    ws.send(envelope(&requested("3", "/demo/secret", json!({}))))
        .await
        .unwrap();
    let Event::Error(error) = next_message(&mut ws).await.event else {
        panic!()
    };
    assert_eq!(error.code, "NOT_FOUND");
    // Abort drops the handler.
    ws.send(envelope(&requested(
        "4",
        "/test/slow",
        json!({"ms": 30_000}),
    )))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    ws.send(envelope(&Message::new("4", Event::Aborted)))
        .await
        .unwrap();
    assert!(gw.probes.slow.wait_for(1, LONG).await);
    // A token in the request authenticates it.
    let mut admin = requested("5", "/demo/whoami", json!({}));
    if let Event::Requested(r) = &mut admin.event {
        r.auth_token = Some("alk_admin".into());
    }
    ws.send(envelope(&admin)).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await.event,
        Event::Responded(json!({"id": "admin", "scopes": ["admin"]}))
    );
}

/// The gateway calls a plain WebSocket peer: `demo/ask_peer` sends it a `call.requested` for
/// `client/name`, and its answer comes back inside the answer to the peer's own request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_peers_answer_the_gateways_calls() {
    let gw = start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&gw.ws).await.unwrap();
    ws.send(envelope(&requested("1", "/demo/ask_peer", json!({}))))
        .await
        .unwrap();
    let question = next_message(&mut ws).await;
    let Event::Requested(request) = &question.event else {
        panic!("expected a request from the gateway, got {question:?}")
    };
    assert_eq!(request.operation_id, "/client/name");
    assert!(request.timeout_ms.is_some(), "the deadline goes along");
    ws.send(envelope(&Message::new(
        question.id.clone(),
        Event::Responded(json!("a python-ish peer")),
    )))
    .await
    .unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::new(
            "1",
            Event::Responded(json!({"peerSays": "a python-ish peer"}))
        )
    );
    // A peer that answers with an error: the error passes through.
    ws.send(envelope(&requested("2", "/demo/ask_peer", json!({}))))
        .await
        .unwrap();
    let question = next_message(&mut ws).await;
    ws.send(envelope(&Message::new(
        question.id,
        Event::Error(alknet::CallError::not_found("no such operation here")),
    )))
    .await
    .unwrap();
    let Event::Error(error) = next_message(&mut ws).await.event else {
        panic!()
    };
    assert_eq!(error.code, "NOT_FOUND");
}

/// A Rust [`WebSocketClient`] session is a `Connection` like a QUIC one: calls, subscriptions,
/// deadlines, aborts and identity one way; the gateway's calls and subscriptions the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_client_sessions_call_both_ways() {
    let gw = start().await;
    let mut registry = Registry::new();
    registry
        .register_handler(
            OperationSpec::new("client/name", OpType::Query).unwrap(),
            Handler::unary(|_ctx, _input| async move { Ok(json!("rust ws client")) }),
        )
        .unwrap();
    registry
        .register_handler(
            OperationSpec::new("client/count", OpType::Subscription).unwrap(),
            Handler::subscription(|_ctx, input: Value| async move {
                let upto = input["upto"].as_u64().unwrap_or(3);
                Ok(futures_util::stream::iter(1..=upto).map(|n| Ok(json!(n))))
            }),
        )
        .unwrap();
    let client = WebSocketClient::new(
        registry,
        WebSocketOptions {
            auth_token: Some("alk_admin".into()),
            ..WebSocketOptions::default()
        },
    );
    let conn = client.connect(&gw.ws).await.unwrap();
    assert!(conn.quic().is_none());
    // The upgrade's bearer token is the session's identity.
    assert_eq!(
        conn.call_json("demo/whoami", json!({})).await.unwrap(),
        json!({"id": "admin", "scopes": ["admin"]})
    );
    // Typed calls work as on QUIC.
    let sum = conn
        .call::<alknet::demo::AddOp>(&alknet::demo::AddInput {
            a: 20.into(),
            b: 22.into(),
        })
        .await
        .unwrap();
    assert_eq!(sum.sum, serde_json::Number::from(42));
    // The gateway calls this client back, while this client waits on the gateway.
    assert_eq!(
        conn.call_json("demo/ask_peer", json!({})).await.unwrap(),
        json!({"peerSays": "rust ws client"})
    );
    // A subscription from the gateway to this client, forwarded back to it.
    let items: Vec<_> = conn
        .subscribe_json("test/peer_count", json!({"upto": 4}))
        .await
        .unwrap()
        .collect()
        .await;
    let items: Vec<Value> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(items, vec![json!(1), json!(2), json!(3), json!(4)]);
    // Subscriptions from this client, concurrently with a call.
    let ticks = conn
        .subscribe_json("demo/ticks", json!({"count": 3}))
        .await
        .unwrap();
    let (ticks, echoed) = tokio::join!(
        ticks.collect::<Vec<_>>(),
        conn.call_json("demo/echo", json!("concurrent"))
    );
    assert_eq!(ticks.len(), 3);
    assert_eq!(echoed.unwrap(), json!("concurrent"));
    // A deadline: the call fails with TIMEOUT and the gateway drops the handler.
    let error = conn
        .call_json_with(
            "test/slow",
            json!({"ms": 30_000}),
            CallOptions::timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "TIMEOUT");
    assert!(gw.probes.slow.wait_for(1, LONG).await);
    // Dropping a subscription aborts it on the gateway.
    let mut forever = conn
        .subscribe_json("test/forever", Value::Null)
        .await
        .unwrap();
    assert!(forever.next().await.unwrap().is_ok());
    drop(forever);
    assert!(gw.probes.forever.wait_for(1, LONG).await);
    // The gateway shutting down ends the session; calls then fail with "connection closed".
    let Gateway {
        _server: server, ..
    } = gw;
    server.shutdown(Duration::from_secs(1)).await;
    tokio::time::timeout(LONG, conn.closed()).await.unwrap();
    let error = conn.call_json("demo/echo", json!(1)).await.unwrap_err();
    assert_eq!(error.message, "connection closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_garbage_closes_with_a_protocol_error() {
    let gw = start().await;
    for garbage in [
        WsMessage::Text("hello".into()),
        WsMessage::Binary(b"not json".to_vec().into()),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&gw.ws).await.unwrap();
        ws.send(garbage.clone()).await.unwrap();
        let closed = loop {
            match tokio::time::timeout(LONG, ws.next()).await.unwrap() {
                Some(Ok(WsMessage::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("{garbage:?}: {other:?}"),
            }
        };
        let frame = closed.expect("a close frame");
        assert_eq!(u16::from(frame.code), 1002, "{garbage:?}");
        assert!(!frame.reason.is_empty());
    }
    // A message over the frame limit (64 KiB here) ends the session before it is buffered.
    let (mut ws, _) = tokio_tungstenite::connect_async(&gw.ws).await.unwrap();
    let huge = WsMessage::Binary(vec![b'x'; 256 * 1024].into());
    let _ = ws.send(huge).await;
    let ended = tokio::time::timeout(LONG, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break None,
            }
        }
    })
    .await
    .expect("the session ends");
    assert_eq!(ended, Some(1009));
    // The gateway still serves.
    assert_eq!(
        gw.call("demo/add", json!({"a": 1, "b": 1}), None).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_served_from_the_registry() {
    let gw = start().await;
    let doc: Value = gw
        .http
        .get(format!("{}/openapi.json", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/ops/demo/add"]["post"].is_object());
    assert!(doc["paths"].get("/ops/demo/secret").is_none());
    // An operation that calls back its caller's side needs a connection HTTP does not have.
    assert!(doc["paths"].get("/ops/demo/ask_peer").is_none());
    let listed = gw
        .http
        .get(format!("{}/search", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("demo/add") && !listed.contains("demo/ask_peer"),
        "{listed}"
    );
    assert!(doc["paths"]["/call"].is_object());
    // Where to call it: the listening address.
    assert_eq!(doc["servers"], json!([{ "url": gw.base }]));
    // Closed objects stay `additionalProperties: false`, which generators read as closed.
    let add_input = &doc["paths"]["/ops/demo/add"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let add_input = match add_input.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap()
            .clone(),
        None => add_input.clone(),
    };
    assert_eq!(
        add_input["additionalProperties"],
        json!(false),
        "{add_input}"
    );
}

/// Browsers: CORS answers the listed origin's preflights and nobody else's; the WebSocket and
/// MCP refuse pages from unlisted origins; clients that send no `Origin` are not browsers and
/// are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_origins_get_in_from_a_browser() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = Server::bind(
        alknet::demo::registry(),
        ServerOptions::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let options = alknet::HttpOptions {
        cors_origins: vec!["http://app.example:8000".into()],
        ..alknet::HttpOptions::default()
    };
    let addr = server
        .serve_http_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let preflight = async |origin: &str| {
        http.request(reqwest::Method::OPTIONS, format!("http://{addr}/call"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type, authorization",
            )
            .send()
            .await
            .unwrap()
    };
    let allowed = preflight("http://app.example:8000").await;
    assert!(allowed.status().is_success(), "{allowed:?}");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://app.example:8000"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    let refused = preflight("http://evil.example").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{refused:?}"
    );
    // An actual call from the listed origin carries the header the browser needs.
    let call = http
        .post(format!("http://{addr}/call"))
        .header("Origin", "http://app.example:8000")
        .json(&json!({"operation": "demo/add", "input": {"a": 1, "b": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "http://app.example:8000"
    );

    // The WebSocket: a forged Origin is refused before the upgrade, with a JSON error.
    let ws = |origin: Option<&str>| {
        let mut request = format!("ws://{addr}/alknet/call")
            .into_client_request()
            .unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    match ws(Some("http://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "FORBIDDEN");
        }
        other => panic!("a forged origin upgraded: {:?}", other.map(|_| ())),
    }
    assert!(ws(Some("http://app.example:8000")).await.is_ok());
    assert!(ws(None).await.is_ok(), "no Origin: not a browser");

    // MCP: the same rule.
    let mcp = async |origin: &str| {
        http.post(format!("http://{addr}/mcp"))
            .header("Origin", origin)
            .header("Accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(mcp("http://evil.example").await, 403);
    assert_ne!(mcp("http://app.example:8000").await, 403);
}

/// A page cannot run an operation with a "simple" request (no preflight): bodies that are not
/// JSON are refused with 415 before anything runs; clients without `Origin` may omit the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_json_bodies_run_operations() {
    let gw = start().await;
    let body = json!({"operation": "demo/fail", "input": {}}).to_string();
    for (content_type, origin) in [
        (Some("text/plain;charset=UTF-8"), None),
        (
            Some("application/x-www-form-urlencoded"),
            Some("http://evil.example"),
        ),
        (Some("multipart/form-data; boundary=x"), None),
        (None, Some("http://evil.example")),
    ] {
        let mut request = gw.http.post(format!("{}/call", gw.base)).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?} {origin:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "INVALID_INPUT");
    }
    for path in ["/ops/demo/fail", "/batch", "/subscribe"] {
        let response = gw
            .http
            .post(format!("{}{path}", gw.base))
            .header("Content-Type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{path}");
    }
    // JSON (with parameters, or a +json type) runs; so does a body without a type and without
    // an Origin (not a browser: curl, scripts).
    for content_type in [
        Some("application/json; charset=utf-8"),
        Some("application/vnd.x+json"),
        None,
    ] {
        let mut request = gw.http.post(format!("{}/call", gw.base)).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, 409, "demo/fail ran with {content_type:?}");
    }
}
