//! Identity, access control, composition and abort cascades (design §5–§6) over real QUIC,
//! with real client certificates and tokens.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alknet::spec::{AccessControl, OpType, OperationSpec, Visibility};
use alknet::{
    CallError, CallOptions, Client, ClientOptions, Composition, ConfigIdentities, Connection,
    Handler, Identity, NestedOptions, OwnershipProvider, Registry, Server, ServerOptions,
    ServerVerification, TlsIdentity,
};
use common::DropProbe;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(5);

fn op(name: &str, op_type: OpType) -> OperationSpec {
    OperationSpec::new(name, op_type).unwrap()
}

fn access(f: impl FnOnce(&mut AccessControl)) -> AccessControl {
    let mut access = AccessControl::default();
    f(&mut access);
    access
}

/// Documents `d1` and `d2`; `owner` owns `d1`.
struct Documents;

impl OwnershipProvider for Documents {
    fn owns<'a>(
        &'a self,
        identity: &'a Identity,
        id: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move { identity.id == "owner" && id == "d1" && action == "edit" })
    }
}

fn echo_identity() -> Handler {
    Handler::unary(|ctx, _input| async move { Ok(json!(ctx.identity().map(|i| i.id.clone()))) })
}

/// Probes for the composition tests: how many handlers started, and how many were dropped.
#[derive(Clone)]
struct Tree {
    started: DropProbe,
    dropped: DropProbe,
    finished: DropProbe,
}

impl Tree {
    fn new() -> Self {
        Self {
            started: DropProbe::new(),
            dropped: DropProbe::new(),
            finished: DropProbe::new(),
        }
    }

    /// A handler that marks itself started, then runs `body`; its guard counts the drop.
    fn handler<F, Fut>(&self, body: F) -> Handler
    where
        F: Fn(alknet::Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CallError>> + Send + 'static,
    {
        let tree = self.clone();
        let body = Arc::new(body);
        Handler::unary(move |ctx, input| {
            let tree = tree.clone();
            let body = Arc::clone(&body);
            async move {
                let _dropped = tree.dropped.guard();
                drop(tree.started.guard());
                body(ctx, input).await
            }
        })
    }
}

fn sleep_forever(tree: &Tree) -> Handler {
    tree.handler(|_ctx, _input| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Value::Null)
    })
}

fn server_registry(tree: &Tree) -> Registry {
    let mut registry = alknet::demo::registry();
    let all = access(|a| a.required_scopes = vec!["a".into(), "b".into()]);
    let any = access(|a| a.required_scopes_any = Some(vec!["x".into(), "y".into()]));
    let owned = access(|a| {
        a.resource_type = Some("doc".into());
        a.resource_action = Some("edit".into());
    });
    let report = access(|a| {
        a.resource_type = Some("report".into());
        a.resource_action = Some("read".into());
    });
    registry
        .register_handler(
            op("acl/all", OpType::Query).with_access(all),
            echo_identity(),
        )
        .unwrap();
    registry
        .register_handler(
            op("acl/any", OpType::Query).with_access(any),
            echo_identity(),
        )
        .unwrap();
    registry
        .register_handler(
            op("acl/owned", OpType::Mutation)
                .with_access(owned)
                .with_resource_id_path("/docId"),
            echo_identity(),
        )
        .unwrap();
    registry
        .register_handler(
            op("acl/report", OpType::Query)
                .with_access(report)
                .with_resource_id_path("/reportId"),
            echo_identity(),
        )
        .unwrap();
    registry
        .register_handler(
            op("acl/hidden", OpType::Query).with_visibility(Visibility::Internal),
            echo_identity(),
        )
        .unwrap();
    registry.set_ownership("doc", Arc::new(Documents));

    // Composition: an internal operation only the composer's authority may call.
    let composer_only = access(|a| a.required_scopes = vec!["composer".into()]);
    registry
        .register_handler(
            op("acl/needs_composer", OpType::Query)
                .with_visibility(Visibility::Internal)
                .with_access(composer_only),
            echo_identity(),
        )
        .unwrap();
    registry
        .register_composed(
            op("acl/composer", OpType::Query),
            Handler::unary(|ctx, input: Value| async move {
                let target = input["call"]
                    .as_str()
                    .unwrap_or("acl/needs_composer")
                    .to_owned();
                let who = ctx.env().call_json(&target, json!({})).await?;
                Ok(json!({"caller": ctx.identity().map(|i| i.id.clone()), "nested_ran_as": who}))
            }),
            Composition::new(
                Identity::new("the-composer", ["composer"]),
                ["acl/needs_composer", "demo/whoami"],
            ),
        )
        .unwrap();

    // The abort tree: root → mid → (leaf here, client/leaf on the caller's side).
    registry
        .register_composed(
            op("tree/root", OpType::Query),
            tree.handler(|ctx, input| async move { ctx.env().call_json("tree/mid", input).await }),
            Composition::new(Identity::new("root", Vec::<String>::new()), ["tree/mid"]),
        )
        .unwrap();
    registry
        .register_composed(
            op("tree/mid", OpType::Query).with_visibility(Visibility::Internal),
            tree.handler(|ctx, input| async move {
                let env = ctx.env();
                let (here, there) = tokio::join!(
                    env.call_json("tree/leaf", input.clone()),
                    env.call_peer_json("client/leaf", input)
                );
                Ok(json!([here?, there?]))
            }),
            Composition::new(
                Identity::new("mid", Vec::<String>::new()),
                ["tree/leaf", "client/leaf"],
            ),
        )
        .unwrap();
    registry
        .register_handler(
            op("tree/leaf", OpType::Query).with_visibility(Visibility::Internal),
            sleep_forever(tree),
        )
        .unwrap();

    // Continue-running: the child outlives its aborted parent and finishes.
    let finished = tree.finished.clone();
    registry
        .register_handler(
            op("tree/slow_child", OpType::Mutation).with_visibility(Visibility::Internal),
            Handler::unary(move |_ctx, _input| {
                let finished = finished.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    drop(finished.guard());
                    Ok(json!("done"))
                }
            }),
        )
        .unwrap();
    registry
        .register_composed(
            op("tree/detaching", OpType::Mutation),
            tree.handler(|ctx, _input| async move {
                ctx.env()
                    .call_json_with(
                        "tree/slow_child",
                        json!({}),
                        NestedOptions::continue_running(),
                    )
                    .await
            }),
            Composition::new(
                Identity::new("detacher", Vec::<String>::new()),
                ["tree/slow_child"],
            ),
        )
        .unwrap();

    // Deadlines: each level reports what it has left, then asks the next.
    registry
        .register_composed(
            op("tree/deadline", OpType::Query),
            Handler::unary(|ctx, input: Value| async move {
                let depth = input["depth"].as_u64().unwrap_or(0);
                let mut report = vec![json!({
                    "id": ctx.request_id(),
                    "parent": ctx.parent_id(),
                    "remaining_ms": ctx.remaining().map(|r| r.as_millis() as u64),
                })];
                if depth > 0 {
                    let below = ctx
                        .env()
                        .call_json("tree/deadline", json!({"depth": depth - 1}))
                        .await?;
                    report.extend(below.as_array().cloned().unwrap_or_default());
                }
                Ok(json!(report))
            }),
            Composition::new(
                Identity::new("deadline", Vec::<String>::new()),
                ["tree/deadline", "tree/leaf"],
            ),
        )
        .unwrap();
    registry
        .register_composed(
            op("tree/deadline_leaf", OpType::Query),
            Handler::unary(|ctx, _input| async move {
                ctx.env().call_json("tree/leaf", json!({})).await
            }),
            Composition::new(
                Identity::new("deadline", Vec::<String>::new()),
                ["tree/leaf"],
            ),
        )
        .unwrap();
    registry
}

struct Node {
    server: Server,
    tree: Tree,
    client_tree: Tree,
    cert_ab: TlsIdentity,
    cert_owner: TlsIdentity,
}

const TOKEN_X: &str = "alk_test_token_x";
const TOKEN_A: &str = "alk_test_token_a";
const TOKEN_REPORT: &str = "alk_test_token_report";

impl Node {
    fn start() -> Node {
        let cert_ab = TlsIdentity::self_signed(&["ab"]).unwrap();
        let cert_owner = TlsIdentity::self_signed(&["owner"]).unwrap();
        let mut reporter = Identity::new("reporter", Vec::<String>::new());
        reporter
            .resources
            .insert("report".into(), vec!["read".into()]);
        let identities = ConfigIdentities::default()
            .with_peer(cert_ab.fingerprint(), Identity::new("cert-ab", ["a", "b"]))
            .with_peer(
                cert_owner.fingerprint(),
                Identity::new("owner", Vec::<String>::new()),
            )
            .with_token(TOKEN_X, Identity::new("token-x", ["x"]))
            .with_token(TOKEN_A, Identity::new("token-a", ["a"]))
            .with_token(TOKEN_REPORT, reporter);
        let tree = Tree::new();
        let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
        options.identities = Some(Arc::new(identities));
        let server = Server::bind(server_registry(&tree), options).unwrap();
        Node {
            server,
            tree,
            client_tree: Tree::new(),
            cert_ab,
            cert_owner,
        }
    }

    async fn connect(
        &self,
        cert: Option<&TlsIdentity>,
        token: Option<&str>,
    ) -> (Client, Connection) {
        let mut options = ClientOptions::new(ServerVerification::pin(self.server.fingerprint()));
        options.identity = cert.cloned();
        options.auth_token = token.map(str::to_owned);
        let mut registry = Registry::new();
        registry
            .register_handler(
                op("client/leaf", OpType::Query),
                sleep_forever(&self.client_tree),
            )
            .unwrap();
        let client = Client::with_registry(registry, options).unwrap();
        let conn = client
            .connect(self.server.local_addr(), "localhost")
            .await
            .unwrap();
        (client, conn)
    }
}

/// What a call came to: the output, or the error's code and message.
type Outcome = Result<Value, (String, String)>;

/// One row of the access matrix: what it shows, who calls, what, with which input, and the
/// expected outcome.
type Case<'a> = (&'a str, &'a Connection, &'a str, Value, Outcome);

async fn outcome(conn: &Connection, op: &str, input: Value) -> Outcome {
    conn.call_json(op, input)
        .await
        .map_err(|e| (e.code, e.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_rule_allows_and_denies() {
    let node = Node::start();
    let (_a, anonymous) = node.connect(None, None).await;
    let (_b, cert_ab) = node.connect(Some(&node.cert_ab), None).await;
    let (_c, owner) = node.connect(Some(&node.cert_owner), None).await;
    let (_d, token_x) = node.connect(None, Some(TOKEN_X)).await;
    let (_e, token_a) = node.connect(None, Some(TOKEN_A)).await;
    let (_f, reporter) = node.connect(None, Some(TOKEN_REPORT)).await;
    let stranger_cert = TlsIdentity::self_signed(&["stranger"]).unwrap();
    let (_g, stranger) = node.connect(Some(&stranger_cert), None).await;

    let forbidden = |message: &str| Err(("FORBIDDEN".to_owned(), message.to_owned()));
    let auth_required = forbidden("authentication required");
    let not_found = |op: &str| {
        Err((
            "NOT_FOUND".to_owned(),
            format!("operation `/{op}` not found"),
        ))
    };
    let cases: Vec<Case> = vec![
        // all-of scopes
        (
            "cert, all-of held",
            &cert_ab,
            "acl/all",
            json!({}),
            Ok(json!("cert-ab")),
        ),
        (
            "token, all-of partly held",
            &token_a,
            "acl/all",
            json!({}),
            forbidden("missing scope `b`"),
        ),
        (
            "anonymous, all-of",
            &anonymous,
            "acl/all",
            json!({}),
            auth_required.clone(),
        ),
        (
            "unknown cert is anonymous",
            &stranger,
            "acl/all",
            json!({}),
            auth_required.clone(),
        ),
        // any-of scopes
        (
            "token, any-of held",
            &token_x,
            "acl/any",
            json!({}),
            Ok(json!("token-x")),
        ),
        (
            "cert, any-of not held",
            &cert_ab,
            "acl/any",
            json!({}),
            forbidden("requires one of the scopes x, y"),
        ),
        (
            "anonymous, any-of",
            &anonymous,
            "acl/any",
            json!({}),
            auth_required.clone(),
        ),
        // resource via the ownership provider
        (
            "cert, owns the resource",
            &owner,
            "acl/owned",
            json!({"docId": "d1"}),
            Ok(json!("owner")),
        ),
        (
            "cert, does not own it",
            &owner,
            "acl/owned",
            json!({"docId": "d2"}),
            forbidden("not allowed: `edit` on this doc"),
        ),
        (
            "token, does not own it",
            &token_x,
            "acl/owned",
            json!({"docId": "d1"}),
            forbidden("not allowed: `edit` on this doc"),
        ),
        (
            "anonymous, resource",
            &anonymous,
            "acl/owned",
            json!({"docId": "d1"}),
            auth_required.clone(),
        ),
        // resource via the static grants
        (
            "token, static grant",
            &reporter,
            "acl/report",
            json!({"reportId": 7}),
            Ok(json!("reporter")),
        ),
        (
            "token, no grant",
            &token_x,
            "acl/report",
            json!({"reportId": 7}),
            forbidden("not allowed: `read` on this report"),
        ),
        (
            "cert, no grant",
            &cert_ab,
            "acl/report",
            json!({"reportId": 7}),
            forbidden("not allowed: `read` on this report"),
        ),
        // internal operations exist for nobody outside
        (
            "cert, internal",
            &cert_ab,
            "acl/hidden",
            json!({}),
            not_found("acl/hidden"),
        ),
        (
            "token, internal",
            &token_x,
            "acl/hidden",
            json!({}),
            not_found("acl/hidden"),
        ),
        (
            "anonymous, internal",
            &anonymous,
            "acl/hidden",
            json!({}),
            not_found("acl/hidden"),
        ),
    ];
    for (what, conn, op, input, expected) in cases {
        assert_eq!(outcome(conn, op, input).await, expected, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_replace_the_connection_identity_per_request() {
    let node = Node::start();
    let (_c, cert_ab) = node.connect(Some(&node.cert_ab), None).await;
    let whoami = |conn: &Connection, token: Option<&str>| {
        let conn = conn.clone();
        let options = CallOptions {
            auth_token: token.map(str::to_owned),
            ..CallOptions::default()
        };
        async move {
            conn.call_json_with("demo/whoami", json!({}), options)
                .await
                .unwrap()["id"]
                .clone()
        }
    };
    assert_eq!(whoami(&cert_ab, None).await, "cert-ab");
    assert_eq!(
        whoami(&cert_ab, Some(TOKEN_X)).await,
        "token-x",
        "a resolving token wins"
    );
    assert_eq!(
        whoami(&cert_ab, None).await,
        "cert-ab",
        "for that request only"
    );
    for bad in ["alk_unknown", "", "not even a token", &"x".repeat(100_000)] {
        assert_eq!(
            whoami(&cert_ab, Some(bad)).await,
            "cert-ab",
            "an unknown token changes nothing"
        );
    }
    let (_a, anonymous) = node.connect(None, Some("alk_unknown")).await;
    assert_eq!(
        anonymous.call_json("demo/whoami", json!({})).await.unwrap(),
        json!(null)
    );
    // Over a token, the token's scopes decide: token-x lacks `a` and `b`.
    let denied = cert_ab
        .call_json_with(
            "acl/all",
            json!({}),
            CallOptions {
                auth_token: Some(TOKEN_X.into()),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(denied.code, "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_shows_what_the_caller_may_call() {
    let node = Node::start();
    let names = |conn: Connection| async move {
        let listed = conn.call_json("services/list", json!({})).await.unwrap();
        listed["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let anonymous = names(node.connect(None, None).await.1).await;
    let cert_ab = names(node.connect(Some(&node.cert_ab), None).await.1).await;
    let token_x = names(node.connect(None, Some(TOKEN_X)).await.1).await;
    let has = |list: &[String], op: &str| list.iter().any(|n| n == op);

    assert!(has(&anonymous, "demo/add") && has(&anonymous, "acl/composer"));
    for restricted in [
        "acl/all",
        "acl/any",
        "acl/owned",
        "acl/report",
        "demo/admin",
    ] {
        assert!(!has(&anonymous, restricted), "anonymous sees {restricted}");
    }
    assert!(has(&cert_ab, "acl/all") && !has(&cert_ab, "acl/any"));
    assert!(has(&token_x, "acl/any") && !has(&token_x, "acl/all"));
    // Resource rules are decided per call, so any identity sees resource operations.
    assert!(has(&token_x, "acl/owned"));
    for list in [&anonymous, &cert_ab, &token_x] {
        for internal in [
            "acl/hidden",
            "acl/needs_composer",
            "tree/mid",
            "tree/leaf",
            "demo/secret",
        ] {
            assert!(!has(list, internal), "{internal} listed");
        }
    }
    let (_c, conn) = node.connect(Some(&node.cert_ab), None).await;
    let error = conn
        .call_json("services/schema", json!({"name": "acl/hidden"}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_run_under_the_composers_authority() {
    let node = Node::start();
    let (_a, anonymous) = node.connect(None, None).await;
    // The anonymous caller cannot reach the internal, scope-guarded operation ...
    assert_eq!(
        outcome(&anonymous, "acl/needs_composer", json!({}))
            .await
            .unwrap_err()
            .0,
        "NOT_FOUND"
    );
    // ... but the composer can, as itself.
    let answer = anonymous
        .call_json("acl/composer", json!({}))
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"caller": null, "nested_ran_as": "the-composer"})
    );
    let (_t, token_x) = node.connect(None, Some(TOKEN_X)).await;
    let answer = token_x
        .call_json("acl/composer", json!({"call": "demo/whoami"}))
        .await
        .unwrap();
    assert_eq!(answer["caller"], "token-x");
    assert_eq!(
        answer["nested_ran_as"],
        json!({"id": "the-composer", "scopes": ["composer"]})
    );
    // Anything off the allow-list does not exist for the composer, internal or not.
    for off_list in ["demo/add", "acl/hidden", "nope/nothing"] {
        let error = anonymous
            .call_json("acl/composer", json!({"call": off_list}))
            .await
            .unwrap_err();
        assert_eq!(error.code, "NOT_FOUND", "{off_list}");
    }
    // The demo composition.
    let composed = anonymous
        .call_json("demo/compose", json!({"a": 1, "b": 2, "c": 3}))
        .await
        .unwrap();
    assert_eq!(composed, json!({"sum": 6, "secret": "internal only"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_root_drops_every_descendant_including_the_remote_one() {
    let node = Node::start();
    let (_c, conn) = node.connect(None, None).await;
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call_json("tree/root", json!({})).await }
    });
    // root, mid and leaf on the server, client/leaf on the client.
    assert!(
        node.tree.started.wait_for(3, LONG).await,
        "server side of the tree started"
    );
    assert!(
        node.client_tree.started.wait_for(1, LONG).await,
        "remote leaf started"
    );
    assert_eq!(node.tree.dropped.count(), 0);

    call.abort(); // dropping the call future sends call.aborted for the root
    assert!(
        node.tree.dropped.wait_for(3, LONG).await,
        "root, mid and leaf dropped"
    );
    assert!(
        node.client_tree.dropped.wait_for(1, LONG).await,
        "the remote leaf was aborted too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continue_running_child_outlives_its_aborted_parent() {
    let node = Node::start();
    let (_c, conn) = node.connect(None, None).await;
    let call = conn.call_json("tree/detaching", json!({}));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    assert!(
        node.tree.dropped.wait_for(1, LONG).await,
        "the parent was dropped"
    );
    assert_eq!(node.tree.finished.count(), 0, "the child is still running");
    assert!(
        node.tree.finished.wait_for(1, LONG).await,
        "the child ran to its end"
    );

    // Not aborted, the parent waits for the child's answer.
    assert_eq!(
        conn.call_json("tree/detaching", json!({})).await.unwrap(),
        json!("done")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_and_ids_are_inherited_down_the_tree() {
    let node = Node::start();
    let (_c, conn) = node.connect(None, None).await;
    let report = conn
        .call_json_with(
            "tree/deadline",
            json!({"depth": 2}),
            CallOptions::timeout(Duration::from_millis(2_000)),
        )
        .await
        .unwrap();
    let levels = report.as_array().unwrap();
    assert_eq!(levels.len(), 3);
    let mut previous = u64::MAX;
    for (depth, level) in levels.iter().enumerate() {
        let remaining = level["remaining_ms"]
            .as_u64()
            .expect("every level has a deadline");
        assert!(
            remaining <= 2_000 && remaining <= previous,
            "level {depth}: {remaining} ms"
        );
        previous = remaining;
    }
    let root = levels[0]["id"].as_str().unwrap();
    assert_eq!(levels[1]["id"], format!("{root}.1"));
    assert_eq!(levels[1]["parent"], root);
    assert_eq!(levels[2]["id"], format!("{root}.1.1"));

    // When the inherited deadline runs out deep down, the root answers TIMEOUT and the leaf is
    // dropped.
    let started = std::time::Instant::now();
    let error = conn
        .call_json_with(
            "tree/deadline_leaf",
            json!({}),
            CallOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(node.tree.dropped.wait_for(1, LONG).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_reach_state_provided_at_registration() {
    struct Greeter {
        greeting: String,
    }
    let mut registry = Registry::new();
    registry.provide(Greeter {
        greeting: "bonjour".into(),
    });
    registry
        .register_handler(
            op("state/greet", OpType::Query),
            Handler::unary(|ctx, _input| async move {
                let greeter = ctx
                    .state::<Greeter>()
                    .ok_or_else(|| CallError::internal("no greeter"))?;
                Ok(json!(greeter.greeting))
            }),
        )
        .unwrap();
    let server =
        Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let client = Client::new(ClientOptions::new(ServerVerification::pin(
        server.fingerprint(),
    )))
    .unwrap();
    let conn = client
        .connect(server.local_addr(), "localhost")
        .await
        .unwrap();
    assert_eq!(
        conn.call_json("state/greet", json!({})).await.unwrap(),
        json!("bonjour")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_asks_its_peer() {
    let node = Node::start();
    let mut registry = Registry::new();
    registry
        .register_handler(
            op("client/name", OpType::Query),
            Handler::unary(|_ctx, _input| async move { Ok(json!("test client")) }),
        )
        .unwrap();
    let options = ClientOptions::new(ServerVerification::pin(node.server.fingerprint()));
    let client = Client::with_registry(registry, options).unwrap();
    let conn = client
        .connect(node.server.local_addr(), "localhost")
        .await
        .unwrap();
    assert_eq!(
        conn.call_json("demo/ask_peer", json!({})).await.unwrap(),
        json!({"peerSays": "test client"})
    );
    // A peer that does not offer `client/name` answers NOT_FOUND, which passes through.
    let (_c, plain) = node.connect(None, None).await;
    let error = plain
        .call_json("demo/ask_peer", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "NOT_FOUND");
}
