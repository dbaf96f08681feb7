//! `from_call` (design §10): nodes importing each other's operations over real QUIC on
//! loopback — forwarding, specs kept, aborts and deadlines down a chain of three nodes, the
//! forwarding node's own identity, a remote that is down, lost and back, and one that breaks
//! its own schema.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alknet::adapters::ImportError;
use alknet::spec::{OpType, OperationSpec};
use alknet::{
    CallImport, CallOptions, Client, ClientOptions, ConfigIdentities, Connection, Handler,
    Identity, Registry, Server, ServerOptions, ServerVerification, TlsIdentity,
};
use common::TestNode;
use futures_util::StreamExt;
use serde_json::{Value, json};

fn import_of(name: &str, server: &Server, external: bool) -> CallImport {
    CallImport {
        name: name.to_owned(),
        addr: server.local_addr(),
        server_name: "localhost".to_owned(),
        client: ClientOptions::new(ServerVerification::pin(server.fingerprint())),
        external,
    }
}

/// A node serving only what it imports from `remote` under `name`.
async fn importer(name: &str, remote: &Server, external: bool) -> Server {
    let mut registry = Registry::new();
    registry
        .import_call(import_of(name, remote, external))
        .await
        .unwrap();
    Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap()
}

async fn connect(server: &Server) -> (Client, Connection) {
    let client = Client::new(ClientOptions::new(ServerVerification::pin(
        server.fingerprint(),
    )))
    .unwrap();
    let conn = client
        .connect(server.local_addr(), "localhost")
        .await
        .unwrap();
    (client, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_operations_forward_calls_subscriptions_and_errors_and_keep_their_specs() {
    let remote = TestNode::start();
    let (_c, direct) = connect(&remote.server).await;
    let node = importer("c", &remote.server, true).await;
    let (_client, conn) = connect(&node).await;

    // Calls through the import equal direct calls.
    let input = json!({"a": 2, "b": 40});
    assert_eq!(
        conn.call_json("c/demo/add", input.clone()).await.unwrap(),
        direct.call_json("demo/add", input).await.unwrap()
    );
    // Subscriptions are forwarded item by item.
    let ticks: Vec<Value> = conn
        .subscribe_json("c/demo/ticks", json!({"count": 3, "intervalMs": 1}))
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(ticks.len(), 3);
    // A resumed subscription resumes on the remote too.
    let resumed: Vec<Value> = conn
        .subscribe_json_with(
            "c/demo/ticks",
            json!({"count": 3, "intervalMs": 1}),
            CallOptions {
                resume_after: Some(1),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(resumed, [json!({"n": 2}), json!({"n": 3})]);
    // Declared errors pass through with their code; bad input is refused here, as there.
    let failed = conn
        .call_json("c/demo/fail", json!({"reason": "on purpose"}))
        .await
        .unwrap_err();
    let direct_failed = direct
        .call_json("demo/fail", json!({"reason": "on purpose"}))
        .await
        .unwrap_err();
    assert_eq!(failed.code, direct_failed.code);
    let invalid = conn
        .call_json("c/demo/add", json!({"a": "two"}))
        .await
        .unwrap_err();
    assert_eq!(invalid.code, "INVALID_INPUT");

    // The spec is the remote's, under the import's name.
    let local = conn
        .call_json("services/schema", json!({"name": "c/demo/add"}))
        .await
        .unwrap();
    let mut there = direct
        .call_json("services/schema", json!({"name": "demo/add"}))
        .await
        .unwrap();
    there["name"] = json!("c/demo/add");
    there["namespace"] = json!("c");
    assert_eq!(local, there);
    // Internal operations of the remote are not imported; discovery lists what was.
    let listed = conn.call_json("services/list", json!({})).await.unwrap();
    let names: Vec<&str> = listed["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"c/demo/add"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("secret")), "{names:?}");

    // The HTTP gateway and its OpenAPI document serve them like the node's own.
    let http = node
        .serve_http_with(
            "127.0.0.1:0".parse().unwrap(),
            alknet::HttpOptions::default(),
        )
        .await
        .unwrap();
    let openapi: Value = reqwest::get(format!("http://{http}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        openapi["paths"]["/ops/c/demo/add"].is_object(),
        "{}",
        openapi["paths"]
    );
    let answer: Value = reqwest::Client::new()
        .post(format!("http://{http}/ops/c/demo/add"))
        .json(&json!({"a": 1, "b": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"sum": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_imports_serve_composition_not_callers() {
    let remote = TestNode::start();
    let node = importer("c", &remote.server, false).await;
    let (_client, conn) = connect(&node).await;
    let refused = conn
        .call_json("c/demo/add", json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    assert_eq!(refused.code, "NOT_FOUND");
    let listed = conn.call_json("services/list", json!({})).await.unwrap();
    assert_eq!(listed["operations"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_and_deadlines_travel_down_a_chain_of_three_nodes() {
    let c = TestNode::start();
    let b = importer("c", &c.server, true).await;
    let a = importer("b", &b, true).await;
    let (_client, conn) = connect(&a).await;
    assert_eq!(
        conn.call_json("b/c/demo/add", json!({"a": 1, "b": 1}))
            .await
            .unwrap(),
        json!({"sum": 2})
    );

    // Dropping the call on A stops the handler on C, through B.
    let slow = conn.call_json("b/c/test/slow", json!({"ms": 20_000}));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), slow)
            .await
            .is_err()
    );
    assert!(
        c.probes.slow.wait_for(1, Duration::from_secs(3)).await,
        "the handler on C was dropped"
    );

    // A deadline set at A goes on to C as what is left of it.
    let started = std::time::Instant::now();
    let timed_out = conn
        .call_json_with(
            "b/c/test/slow",
            json!({"ms": 20_000}),
            CallOptions::timeout(Duration::from_millis(400)),
        )
        .await
        .unwrap_err();
    assert_eq!(timed_out.code, "TIMEOUT", "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(c.probes.slow.wait_for(2, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarding_node_calls_as_itself() {
    let identities = ConfigIdentities::default()
        .with_token("alk_node_b", Identity::new("node-b", ["import"]))
        .with_token("alk_user", Identity::new("user", ["user"]));
    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    options.identities = Some(Arc::new(identities));
    let remote = Server::bind(alknet::demo::registry(), options).unwrap();
    let mut import = import_of("c", &remote, true);
    import.client.auth_token = Some("alk_node_b".to_owned());
    let mut registry = Registry::new();
    registry.import_call(import).await.unwrap();
    let node = Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let (_client, conn) = connect(&node).await;
    // The caller presents its own token; the remote sees the forwarding node, never the caller.
    let options = CallOptions {
        auth_token: Some("alk_user".to_owned()),
        ..CallOptions::default()
    };
    let who = conn
        .call_json_with("c/demo/whoami", json!({}), options)
        .await
        .unwrap();
    assert_eq!(who["id"], "node-b", "{who}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_is_down_at_start_up_stops_the_import() {
    // A port with nothing behind it: bind a server, note its address, close it.
    let gone = TestNode::start();
    let import = import_of("c", &gone.server, true);
    gone.server.shutdown(Duration::ZERO).await;
    let started = std::time::Instant::now();
    let error = Registry::new().import_call(import).await.unwrap_err();
    assert!(matches!(error, ImportError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("import `c`"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(8));
    // Bad names and clashes are refused too.
    let remote = TestNode::start();
    let mut bad = import_of("a/b", &remote.server, true);
    assert!(matches!(
        Registry::new().import_call(bad.clone()).await,
        Err(ImportError::BadName(_))
    ));
    bad.name = "c".to_owned();
    let mut registry = Registry::new();
    registry.import_call(bad.clone()).await.unwrap();
    assert!(matches!(
        registry.import_call(bad).await,
        Err(ImportError::Registry { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_remote_ends_subscriptions_clearly_and_is_dialled_again() {
    let identity = TlsIdentity::self_signed(&["localhost"]).unwrap();
    let start_remote = |addr: std::net::SocketAddr| {
        let mut options = ServerOptions::new(addr);
        options.identity = Some(identity.clone());
        Server::bind(alknet::demo::registry(), options).unwrap()
    };
    let remote = start_remote("127.0.0.1:0".parse().unwrap());
    let addr = remote.local_addr();
    let node = importer("c", &remote, true).await;
    let (_client, conn) = connect(&node).await;
    let mut ticks = conn
        .subscribe_json("c/demo/ticks", json!({"count": 100, "intervalMs": 50}))
        .await
        .unwrap();
    assert!(ticks.next().await.unwrap().is_ok());

    // The remote goes away: the subscription ends with an error that says so.
    remote.shutdown(Duration::ZERO).await;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), ticks.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(error))) => break error,
            other => panic!("no error: {other:?}"),
        }
    };
    // A graceful stop says so; a lost connection names the import.
    assert!(
        ended.message.contains("shutting down") || ended.message.contains("imported node `c`"),
        "{ended:?}"
    );
    // Calls fail at once, retryable, naming the import.
    let down = conn
        .call_json("c/demo/add", json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    assert!(down.retryable, "{down:?}");
    assert!(down.message.contains("imported node `c`"), "{down:?}");

    // Back at the same address: the next calls dial it again (after the backoff).
    let _back = start_remote(addr);
    let answered = async {
        loop {
            match conn.call_json("c/demo/add", json!({"a": 1, "b": 2})).await {
                Ok(sum) => return sum,
                Err(error) => assert!(error.retryable, "{error:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let sum = tokio::time::timeout(Duration::from_secs(15), answered)
        .await
        .expect("the remote is dialled again");
    assert_eq!(sum, json!({"sum": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_break_their_own_schema_are_errors() {
    let mut registry = Registry::new();
    registry
        .register_handler(
            OperationSpec::new("liar/count", OpType::Query)
                .unwrap()
                .with_output_schema(json!({"type": "integer"})),
            Handler::unary(|_ctx, _input: Value| async move { Ok(json!("many")) }),
        )
        .unwrap();
    let remote =
        Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let node = importer("c", &remote, true).await;
    let (_client, conn) = connect(&node).await;
    let error = conn.call_json("c/liar/count", json!({})).await.unwrap_err();
    assert_eq!(error.code, "INTERNAL");
    assert!(error.message.contains("output schema"), "{error:?}");
}

/// `from_mcp` against alknet's own `/mcp`.
#[cfg(feature = "import-mcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_of_alknets_own_gateway_become_operations() {
    use alknet::adapters::mcp::McpImport;
    let remote = Server::bind(
        alknet::demo::registry(),
        ServerOptions::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let http = remote
        .serve_http_with(
            "127.0.0.1:0".parse().unwrap(),
            alknet::HttpOptions::default(),
        )
        .await
        .unwrap();
    let mut registry = Registry::new();
    let names = registry
        .import_mcp(McpImport {
            name: "m".into(),
            url: format!("http://{http}/mcp"),
            bearer: None,
            external: true,
        })
        .await
        .unwrap();
    assert!(names.contains(&"m/demo/add".to_owned()), "{names:?}");
    let node = Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let (_client, conn) = connect(&node).await;
    let sum = conn
        .call_json("m/demo/add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum, json!({"sum": 5}));
    let spec = conn
        .call_json("services/schema", json!({"name": "m/demo/add"}))
        .await
        .unwrap();
    assert_eq!(
        spec["op_type"], "query",
        "readOnlyHint makes a query: {spec}"
    );
    let failed = conn
        .call_json("m/demo/fail", json!({"reason": "on purpose"}))
        .await
        .unwrap_err();
    assert_eq!(failed.code, "TOOL_ERROR", "{failed:?}");
    let invalid = conn
        .call_json("m/demo/add", json!({"a": "two"}))
        .await
        .unwrap_err();
    assert_eq!(invalid.code, "INVALID_INPUT");
}

/// `from_mcp` against `@modelcontextprotocol/server-everything` over streamable HTTP (npm;
/// `.ci/run` installs it and sets `ALKNET_MCP_EVERYTHING`).
#[cfg(feature = "import-mcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_of_the_reference_server_become_operations() {
    use alknet::adapters::mcp::McpImport;
    let Some(binary) = std::env::var_os("ALKNET_MCP_EVERYTHING") else {
        let reason = "ALKNET_MCP_EVERYTHING (the path of mcp-server-everything) is not set";
        assert!(
            std::env::var_os("ALKNET_REQUIRE_VALIDATORS").is_none(),
            "required in CI: {reason}"
        );
        common::skipped(
            "mcp server-everything",
            "mcp_tools_of_the_reference_server",
            reason,
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(binary)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mcp-server-everything starts");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut registry = Registry::new();
    let mut attempts = 0;
    let names = loop {
        let import = McpImport {
            name: "ev".into(),
            url: url.clone(),
            bearer: None,
            external: true,
        };
        match registry.import_mcp(import).await {
            Ok(names) => break names,
            Err(error) if attempts < 50 => {
                attempts += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert!(names.contains(&"ev/get-sum".to_owned()), "{names:?}");
    let node = Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let (_client, conn) = connect(&node).await;
    let sum = conn
        .call_json("ev/get-sum", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    let text = sum["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains('5'), "{sum}");
    let weather = conn
        .call_json("ev/get-structured-content", json!({"location": "Chicago"}))
        .await
        .unwrap();
    assert!(weather["temperature"].is_number(), "{weather}");
    let echoed = conn
        .call_json("ev/echo", json!({"message": "hello"}))
        .await
        .unwrap();
    assert!(echoed.to_string().contains("hello"), "{echoed}");
    let _ = server.kill().await;
}
