//! The Docker pack against a real daemon: every operation, ownership across identities, the
//! logs/exec/pull streams with their ends and aborts, interactive sessions on `alknet/tty`, and
//! the `alknet tty` command.
//!
//! Needs a Docker daemon (at `ALKNET_DOCKER_SOCKET`, default `/var/run/docker.sock`), the image
//! `alknet-test:latest` and, for pulls, a registry on `ALKNET_TEST_REGISTRY` — `bash
//! scripts/docker-test-env.sh` prepares all three. Without them
//! these tests print SKIPPED; with `ALKNET_REQUIRE_DOCKER` set (CI) they fail instead.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alknet::docker::api::types::{
    ContainerCreateInput, ContainerCreateInputImage, ContainerRef, ExecItem, OutputStream,
};
use alknet::docker::api::{ContainerInspectOp, DockerClient};
use alknet::docker::tty::{ALPN_TTY, TtyError, TtyEvent, TtyMode, TtyRequest, TtySession};
use alknet::docker::{DEFAULT_SOCKET, DockerPack};
use alknet::{
    CallError, Client, ClientOptions, ConfigIdentities, Connection, Identity, OpError, Registry,
    Server, ServerOptions, ServerVerification,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

const IMAGE: &str = "alknet-test:latest";
const LONG: Duration = Duration::from_secs(20);

/// The daemon, or `None` (after saying SKIPPED) when there is none and CI does not require one.
async fn daemon(test: &str) -> Option<DockerPack> {
    let required = std::env::var_os("ALKNET_REQUIRE_DOCKER").is_some();
    let socket = std::env::var("ALKNET_DOCKER_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.into());
    let pack = match DockerPack::connect(&socket).await {
        Ok(pack) => pack,
        Err(error) => {
            assert!(
                !required,
                "{test}: a Docker daemon is required (ALKNET_REQUIRE_DOCKER is set): {error}"
            );
            common::skipped(
                "docker",
                test,
                &format!(
                    "no Docker daemon ({error}); `bash scripts/docker-test-env.sh` starts one"
                ),
            );
            return None;
        }
    };
    if pack.docker().inspect_image(IMAGE).await.is_err() {
        assert!(
            !required,
            "{test}: the image {IMAGE} is required; `bash scripts/docker-test-env.sh` builds it"
        );
        common::skipped(
            "docker",
            test,
            &format!("no image {IMAGE}; `bash scripts/docker-test-env.sh` builds it"),
        );
        return None;
    }
    Some(pack)
}

/// A node serving the pack, with five callers: `alice` and `bob` (scope `docker`), `ops`
/// (scope `docker` and a static grant on every container), `root` (scopes `docker` and
/// `docker-admin`), `guest` (no scope).
struct Node {
    server: Server,
    pack: DockerPack,
}

impl Node {
    async fn start(pack: DockerPack) -> Node {
        let mut registry = Registry::new();
        pack.register(&mut registry).unwrap();
        let mut ops = Identity::new("ops", ["docker"]);
        ops.resources.insert(
            "container".into(),
            ["inspect", "logs", "stop", "remove", "exec"]
                .map(String::from)
                .to_vec(),
        );
        let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
        options.identities = Some(Arc::new(
            ConfigIdentities::default()
                .with_token("tok_alice", Identity::new("alice", ["docker"]))
                .with_token("tok_bob", Identity::new("bob", ["docker"]))
                .with_token("tok_ops", ops)
                .with_token(
                    "tok_root",
                    Identity::new("root", ["docker", "docker-admin"]),
                )
                .with_token("tok_guest", Identity::new("guest", ["demo"])),
        ));
        options
            .alpn_services
            .push(alknet::docker::tty::TtyService::new(pack.clone()));
        let server = Server::bind(registry, options).unwrap();
        Node { server, pack }
    }

    /// A connection whose requests carry `token` (none: anonymous).
    async fn as_caller(&self, token: Option<&str>) -> Connection {
        let mut options = ClientOptions::new(ServerVerification::pin(self.server.fingerprint()));
        options.auth_token = token.map(String::from);
        let client = Client::new(options).unwrap();
        let conn = client
            .connect(self.server.local_addr(), "localhost")
            .await
            .unwrap();
        // The connection keeps its endpoint alive.
        std::mem::forget(client);
        conn
    }

    async fn tty(&self, request: &TtyRequest) -> Result<TtySession, TtyError> {
        let options = ClientOptions::new(ServerVerification::pin(self.server.fingerprint()));
        let (endpoint, conn) =
            alknet::quic::connect_alpn(&options, self.server.local_addr(), "localhost", ALPN_TTY)
                .await
                .unwrap();
        std::mem::forget(endpoint);
        let session = TtySession::open(&conn, request).await;
        std::mem::forget(conn);
        session
    }
}

/// A child process that is killed when the test ends, failed or not.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Creates (as `conn`'s caller) and starts a container running `cmd`; removed on drop.
struct TestContainer {
    id: String,
    pack: DockerPack,
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let docker = self.pack.docker().clone();
        let id = self.id.clone();
        // Best effort, on a runtime of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let options = bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&id, Some(options)).await;
            });
        })
        .join();
    }
}

async fn container(node: &Node, conn: &Connection, input: Value, start: bool) -> TestContainer {
    let created = conn
        .call_json("docker/container/create", input)
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let container = TestContainer {
        id: id.clone(),
        pack: node.pack.clone(),
    };
    if start {
        let state = conn
            .call_json("docker/container/start", json!({ "id": id }))
            .await
            .unwrap();
        assert_eq!(state["running"], true, "{state}");
    }
    container
}

fn sleeper() -> Value {
    json!({"image": IMAGE, "cmd": ["sleep", "600"]})
}

async fn code_of(result: Result<Value, CallError>) -> String {
    result.unwrap_err().code
}

/// The error a subscription fails with before its first item.
async fn refused(conn: &Connection, op: &str, input: Value) -> CallError {
    let mut items = conn.subscribe_json(op, input).await.unwrap();
    match tokio::time::timeout(LONG, items.next()).await.unwrap() {
        Some(Err(error)) => error,
        other => panic!("{op} was not refused: {other:?}"),
    }
}

/// The processes running in a container, as `ps` lists them.
async fn processes(conn: &Connection, id: &str) -> String {
    let items: Vec<_> = conn
        .subscribe_json(
            "docker/container/exec",
            json!({"id": id, "cmd": ["ps", "-o", "args"]}),
        )
        .await
        .unwrap()
        .collect()
        .await;
    items
        .into_iter()
        .filter_map(|i| {
            i.ok()?
                .get("text")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_and_image_operations_against_the_daemon() {
    let Some(pack) = daemon("container_and_image_operations_against_the_daemon").await else {
        return;
    };
    // Negotiated down to what the engine speaks (Debian's 20.10: 1.41).
    let version = pack.api_version();
    assert!(version.starts_with("1."), "{version}");
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;

    let images = alice
        .call_json("docker/image/list", json!({}))
        .await
        .unwrap();
    let listed = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tags"].as_array().unwrap().contains(&json!(IMAGE)))
        .unwrap_or_else(|| panic!("{IMAGE} listed: {images}"))
        .clone();
    // RFC 3339 in UTC, as `image/inspect` says it.
    let created = listed["created"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    let image = alice
        .call_json("docker/image/inspect", json!({"image": IMAGE}))
        .await
        .unwrap();
    assert_eq!(image["os"], "linux");
    let missing = alice
        .call_json(
            "docker/image/inspect",
            json!({"image": "alknet-no-such:image"}),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code, "IMAGE_NOT_FOUND");
    assert_eq!(
        missing.details,
        Some(json!({"image": "alknet-no-such:image"}))
    );

    // Create → start → inspect → stop → restart → remove, through the typed client.
    let docker = DockerClient::new(alice.clone());
    let created = docker
        .container_create(&ContainerCreateInput {
            image: ContainerCreateInputImage::try_from(IMAGE).unwrap(),
            cmd: vec!["sleep".into(), "600".into()],
            labels: Some(alknet::docker::api::types::Labels(
                [("purpose".to_owned(), "test".to_owned())].into(),
            )),
            env: Some(alknet::docker::api::types::Env::Object(
                [("GREETING".to_owned(), "hi".to_owned())].into(),
            )),
            entrypoint: vec![],
            name: None,
            open_stdin: false,
            tty: false,
            working_dir: None,
        })
        .await
        .unwrap();
    let guard = TestContainer {
        id: created.id.clone(),
        pack: node.pack.clone(),
    };
    let id_ref = ContainerRef {
        id: created.id.as_str().try_into().unwrap(),
    };
    let state = docker.container_start(&id_ref).await.unwrap();
    assert!(state.running);
    let details = alice.call::<ContainerInspectOp>(&id_ref).await.unwrap();
    assert_eq!(details.owner.as_deref(), Some("alice"));
    assert_eq!(details.labels.0["alknet.managed"], "true");
    assert_eq!(details.labels.0["purpose"], "test");
    assert_eq!(details.state.status, "running");
    let stopped = alice
        .call_json(
            "docker/container/stop",
            json!({"id": created.id, "timeoutSecs": 0}),
        )
        .await
        .unwrap();
    assert_eq!(stopped["running"], false);
    assert_eq!(stopped["status"], "exited");
    assert_eq!(stopped["exitCode"], 137, "{stopped}");
    let restarted = alice
        .call_json(
            "docker/container/restart",
            json!({"id": created.id, "timeoutSecs": 0}),
        )
        .await
        .unwrap();
    assert_eq!(restarted["running"], true);
    // A running container is only removed with force: a conflict, saying so.
    let error = alice
        .call_json("docker/container/remove", json!({"id": created.id}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "CONTAINER_CONFLICT", "{error:?}");
    assert!(error.message.contains("running"), "{}", error.message);
    // Removed by a short id, answered with the full one, as every other operation answers.
    let removed = alice
        .call_json(
            "docker/container/remove",
            json!({"id": &created.id[..12], "force": true}),
        )
        .await
        .unwrap();
    assert_eq!(removed, json!({"id": created.id, "removed": true}));
    drop(guard);
    // Gone: alice, and `ops` (a static grant), learn that it does not exist.
    assert_eq!(
        code_of(
            alice
                .call_json("docker/container/inspect", json!({"id": created.id}))
                .await
        )
        .await,
        "CONTAINER_NOT_FOUND"
    );
    let ops = node.as_caller(Some("tok_ops")).await;
    let error = ops
        .call_json("docker/container/inspect", json!({"id": created.id}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "CONTAINER_NOT_FOUND");
    assert_eq!(error.details, Some(json!({"id": created.id})));

    // Typed errors come back as the generated enum.
    let error = docker
        .container_create(&ContainerCreateInput {
            image: ContainerCreateInputImage::try_from("alknet-no-such:image").unwrap(),
            cmd: vec![],
            entrypoint: vec![],
            env: Default::default(),
            labels: None,
            name: None,
            open_stdin: false,
            tty: false,
            working_dir: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            OpError::Domain(alknet::docker::api::ContainerCreateError::ImageNotFound(_))
        ),
        "{error:?}"
    );
    // Callers may not set alknet's labels.
    let error = alice
        .call_json(
            "docker/container/create",
            json!({"image": IMAGE, "labels": {"alknet.owner": "bob"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "INVALID_INPUT");
    assert_eq!(
        error.details,
        Some(json!({"pointer": "/labels/alknet.owner"}))
    );
    // Ids and image names go into the daemon's URL paths: nothing that could leave its path
    // segment or add a query gets there.
    for id in ["../images/alknet-test", "x?force=true", "a/b", "a#b"] {
        let owner_check = alice
            .call_json("docker/container/remove", json!({"id": id}))
            .await
            .unwrap_err();
        assert_eq!(owner_check.code, "CONTAINER_NOT_FOUND", "{id}");
        let validated = ops
            .call_json("docker/container/remove", json!({"id": id}))
            .await
            .unwrap_err();
        assert_eq!(validated.code, "INVALID_INPUT", "{id}");
        assert_eq!(validated.details, Some(json!({"pointer": "/id"})));
    }
    for image in [
        "../containers/x",
        "a/../containers/x",
        "alknet-test?x=1",
        "/etc",
    ] {
        let error = alice
            .call_json("docker/image/inspect", json!({"image": image}))
            .await
            .unwrap_err();
        assert_eq!(error.code, "INVALID_INPUT", "{image}");
    }
    // Schema validation happens before the daemon is asked (after the access check).
    let error = ops
        .call_json(
            "docker/container/stop",
            json!({"id": "x", "timeoutSecs": -1}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "INVALID_INPUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_is_checked_across_identities() {
    let Some(pack) = daemon("ownership_is_checked_across_identities").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let bob = node.as_caller(Some("tok_bob")).await;
    let ops = node.as_caller(Some("tok_ops")).await;
    let guest = node.as_caller(Some("tok_guest")).await;
    let anonymous = node.as_caller(None).await;
    let mine = container(&node, &alice, sleeper(), true).await;
    let id = mine.id.as_str();

    // The owner may do everything.
    alice
        .call_json("docker/container/inspect", json!({"id": id}))
        .await
        .unwrap();
    // Another identity with the same scope may do nothing to it, and cannot tell it from a
    // container that does not exist.
    for (op, input) in [
        ("docker/container/inspect", json!({"id": id})),
        ("docker/container/stop", json!({"id": id})),
        ("docker/container/restart", json!({"id": id})),
        ("docker/container/remove", json!({"id": id, "force": true})),
    ] {
        let error = bob.call_json(op, input).await.unwrap_err();
        assert_eq!(error.code, "CONTAINER_NOT_FOUND", "bob {op}");
        assert_eq!(error.message, format!("no such container: {id}"));
        let missing = bob
            .call_json(op, json!({"id": "no-such-container-here"}))
            .await
            .unwrap_err();
        assert_eq!(missing.code, "CONTAINER_NOT_FOUND", "bob {op} of nothing");
    }
    for (op, input) in [
        ("docker/container/logs", json!({"id": id})),
        ("docker/container/exec", json!({"id": id, "cmd": ["id"]})),
    ] {
        let error = refused(&bob, op, input).await;
        assert_eq!(error.code, "CONTAINER_NOT_FOUND", "bob {op}");
    }
    // A static grant covers the actions it lists, and only those: the container is visible
    // to it, so an action it lacks is FORBIDDEN.
    let details = ops
        .call_json("docker/container/inspect", json!({"id": id}))
        .await
        .unwrap();
    assert_eq!(details["owner"], "alice");
    let error = ops
        .call_json("docker/container/restart", json!({"id": id}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "FORBIDDEN");
    assert_eq!(error.message, "not allowed: `restart` on this container");
    // The admin scope may do everything.
    let root = node.as_caller(Some("tok_root")).await;
    root.call_json("docker/container/restart", json!({"id": id}))
        .await
        .unwrap();
    // Without the scope, or without an identity, nothing.
    let error = guest
        .call_json("docker/container/list", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "FORBIDDEN");
    let error = anonymous
        .call_json("docker/container/inspect", json!({"id": id}))
        .await
        .unwrap_err();
    assert_eq!(error.message, "authentication required");
    // `ownedOnly` lists the caller's own containers.
    let owned = |list: Value| -> Vec<String> {
        list["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let alices = owned(
        alice
            .call_json("docker/container/list", json!({"ownedOnly": true}))
            .await
            .unwrap(),
    );
    assert!(alices.contains(&mine.id));
    let bobs = owned(
        bob.call_json("docker/container/list", json!({"ownedOnly": true}))
            .await
            .unwrap(),
    );
    assert!(!bobs.contains(&mine.id));
    // Without `ownedOnly`, each caller sees what it may see: bob not alice's container, a
    // static grant every container alknet created, the admin every container.
    let visible_to = |conn: Connection| async move {
        owned(
            conn.call_json("docker/container/list", json!({"all": true}))
                .await
                .unwrap(),
        )
    };
    assert!(!visible_to(bob.clone()).await.contains(&mine.id));
    assert!(visible_to(alice.clone()).await.contains(&mine.id));
    assert!(visible_to(ops.clone()).await.contains(&mine.id));
    let unmanaged = node
        .pack
        .docker()
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let unmanaged = TestContainer {
        id: unmanaged.id,
        pack: node.pack.clone(),
    };
    assert!(!visible_to(ops.clone()).await.contains(&unmanaged.id));
    let everything = visible_to(root.clone()).await;
    assert!(everything.contains(&unmanaged.id) && everything.contains(&mine.id));
    // The owner of a container that is gone is told so.
    alice
        .call_json("docker/container/remove", json!({"id": id, "force": true}))
        .await
        .unwrap();
    let error = alice
        .call_json("docker/container/inspect", json!({"id": id}))
        .await
        .unwrap_err();
    assert_eq!(error.code, "CONTAINER_NOT_FOUND");
    // Discovery shows the docker operations to callers with the scope only.
    let listed = guest.call_json("services/list", json!({})).await.unwrap();
    assert!(!listed.to_string().contains("docker/container"), "{listed}");
    let listed = bob.call_json("services/list", json!({})).await.unwrap();
    assert!(listed.to_string().contains("docker/container/exec"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_until_the_container_exits() {
    let Some(pack) = daemon("logs_follow_until_the_container_exits").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(
        &node,
        &alice,
        json!({"image": IMAGE, "cmd": ["sh", "-c", "echo one; echo two >&2; sleep 1; echo three; exit 2"]}),
        true,
    )
    .await;
    // Not following (the default), a running container's logs so far, then the end.
    let so_far: Vec<_> = tokio::time::timeout(
        LONG,
        alice
            .subscribe_json("docker/container/logs", json!({"id": c.id}))
            .await
            .unwrap()
            .collect::<Vec<_>>(),
    )
    .await
    .expect("logs without follow complete at once");
    assert!(
        !so_far
            .iter()
            .any(|i| i.as_ref().unwrap()["text"] == "three\n"),
        "{so_far:?}"
    );
    let items: Vec<_> = tokio::time::timeout(
        LONG,
        alice
            .subscribe_json("docker/container/logs", json!({"id": c.id, "follow": true}))
            .await
            .unwrap()
            .collect::<Vec<_>>(),
    )
    .await
    .expect("logs complete when the container exits");
    let items: Vec<Value> = items.into_iter().map(Result::unwrap).collect();
    let lines: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            assert!(i["timestamp"].as_str().unwrap().contains('T'), "{i}");
            (
                i["stream"].as_str().unwrap().to_owned(),
                i["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("stdout".into(), "one\n".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "two\n".into())),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &("stdout".to_owned(), "three\n".to_owned())
    );
    let details = alice
        .call_json("docker/container/inspect", json!({"id": c.id}))
        .await
        .unwrap();
    assert_eq!(details["state"]["exitCode"], 2);
    // Without follow: the history, then the end.
    let tail: Vec<_> = alice
        .subscribe_json(
            "docker/container/logs",
            json!({"id": c.id, "follow": false, "tail": 1, "stderr": false}),
        )
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].as_ref().unwrap()["text"], "three\n");
    // A container that does not exist, seen by someone allowed to look.
    let ops = node.as_caller(Some("tok_ops")).await;
    let error = refused(
        &ops,
        "docker/container/logs",
        json!({"id": "alknet-no-such-container"}),
    )
    .await;
    assert_eq!(error.code, "CONTAINER_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_logs_closes_the_daemon_stream() {
    let Some(pack) = daemon("aborting_logs_closes_the_daemon_stream").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(
        &node,
        &alice,
        json!({"image": IMAGE, "cmd": ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]}),
        true,
    )
    .await;
    assert_eq!(node.pack.active_streams(), 0);
    let mut logs = alice
        .subscribe_json("docker/container/logs", json!({"id": c.id, "follow": true}))
        .await
        .unwrap();
    assert_eq!(logs.next().await.unwrap().unwrap()["text"], "tick\n");
    assert_eq!(node.pack.active_streams(), 1);
    drop(logs);
    let pack = node.pack.clone();
    assert!(
        eventually(async || pack.active_streams() == 0).await,
        "the daemon stream is still open after the abort"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_output_then_the_exit_code() {
    let Some(pack) = daemon("exec_streams_output_then_the_exit_code").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(&node, &alice, sleeper(), true).await;
    let items: Vec<_> = alice
        .subscribe_json(
            "docker/container/exec",
            json!({"id": c.id, "cmd": ["sh", "-c", "echo out; echo err >&2; echo $GREETING; exit 7"], "env": {"GREETING": "hello"}}),
        )
        .await
        .unwrap()
        .collect()
        .await;
    let items: Vec<Value> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        items.last().unwrap(),
        &json!({"exitCode": 7, "terminal": true})
    );
    let outputs = &items[..items.len() - 1];
    let text: String = outputs
        .iter()
        .filter(|i| i["stream"] == "stdout")
        .map(|i| i["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "out\nhello\n");
    // Docker's own `["NAME=value"]` form of `env` works too.
    let items: Vec<_> = alice
        .subscribe_json(
            "docker/container/exec",
            json!({"id": c.id, "cmd": ["sh", "-c", "echo $GREETING"], "env": ["GREETING=as docker writes it"]}),
        )
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(
        items[0].as_ref().unwrap(),
        &json!({"stream": "stdout", "text": "as docker writes it\n"})
    );
    assert!(outputs.contains(&json!({"stream": "stderr", "text": "err\n"})));
    // Typed: the exit item is the generated enum's second variant.
    let typed: Vec<_> = DockerClient::new(alice.clone())
        .container_exec(&serde_json::from_value(json!({"id": c.id, "cmd": ["true"]})).unwrap())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(
        typed.last().unwrap().as_ref().unwrap(),
        ExecItem::Exit(exit) if exit.exit_code == 0 && exit.terminal
    ));
    assert!(!typed.iter().any(|i| matches!(
        i.as_ref().unwrap(),
        ExecItem::Output(o) if o.stream == OutputStream::Console
    )));
    // A TTY is refused here, pointing to interactive sessions.
    let error = refused(
        &alice,
        "docker/container/exec",
        json!({"id": c.id, "cmd": ["sh"], "tty": true}),
    )
    .await;
    assert_eq!(error.code, "INVALID_INPUT");
    assert_eq!(error.details, Some(json!({"pointer": "/tty"})));
    assert!(error.message.contains("alknet/tty"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_exec_kills_the_command() {
    let Some(pack) = daemon("aborting_exec_kills_the_command").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(&node, &alice, sleeper(), true).await;
    let mut exec = alice
        .subscribe_json(
            "docker/container/exec",
            json!({"id": c.id, "cmd": ["sh", "-c", "echo started; exec sleep 4242"]}),
        )
        .await
        .unwrap();
    assert_eq!(exec.next().await.unwrap().unwrap()["text"], "started\n");
    assert!(processes(&alice, &c.id).await.contains("sleep 4242"));
    drop(exec);
    let (conn, id) = (alice.clone(), c.id.clone());
    assert!(
        eventually(async || !processes(&conn, &id).await.contains("sleep 4242")).await,
        "the command survived the abort"
    );
    let pack = node.pack.clone();
    assert!(eventually(async || pack.active_streams() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_streams_progress_from_a_registry() {
    let Some(pack) = daemon("image_pull_streams_progress_from_a_registry").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    // Nothing listens on port 1: the pull fails, with the declared error.
    let items: Vec<_> = alice
        .subscribe_json(
            "docker/image/pull",
            json!({"image": "127.0.0.1:1/alknet/none:latest"}),
        )
        .await
        .unwrap()
        .collect()
        .await;
    let error = items.last().unwrap().as_ref().expect_err("the pull fails");
    assert_eq!(error.code, "IMAGE_PULL_FAILED", "{error:?}");
    assert_eq!(
        error.details,
        Some(json!({"image": "127.0.0.1:1/alknet/none:latest"}))
    );

    let Some(registry) = std::env::var("ALKNET_TEST_REGISTRY").ok() else {
        assert!(
            std::env::var_os("ALKNET_REQUIRE_DOCKER").is_none(),
            "ALKNET_TEST_REGISTRY must name a registry when ALKNET_REQUIRE_DOCKER is set"
        );
        common::skipped(
            "docker registry",
            "the successful pull",
            "set ALKNET_TEST_REGISTRY (scripts/docker-test-env.sh starts one on 127.0.0.1:5000)",
        );
        return;
    };
    // Push the test image to the local registry, forget it here, and pull it back.
    let docker = node.pack.docker();
    let repo = format!("{registry}/alknet/pulled");
    let tag = format!("t{}", std::process::id());
    let reference = format!("{repo}:{tag}");
    docker
        .tag_image(
            IMAGE,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(repo.clone()),
                tag: Some(tag.clone()),
            }),
        )
        .await
        .unwrap();
    let pushed: Vec<_> = docker
        .push_image(
            &repo,
            Some(bollard::query_parameters::PushImageOptions {
                tag: Some(tag.clone()),
                ..Default::default()
            }),
            None,
        )
        .collect()
        .await;
    for item in &pushed {
        let item = item.as_ref().unwrap();
        assert!(item.error_detail.is_none(), "push failed: {item:?}");
    }
    docker
        .remove_image(
            &reference,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        code_of(
            alice
                .call_json("docker/image/inspect", json!({"image": reference}))
                .await
        )
        .await,
        "IMAGE_NOT_FOUND"
    );
    let items: Vec<_> = tokio::time::timeout(
        LONG,
        alice
            .subscribe_json("docker/image/pull", json!({"image": reference}))
            .await
            .unwrap()
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let items: Vec<Value> = items.into_iter().map(Result::unwrap).collect();
    assert!(items.len() >= 2, "{items:?}");
    assert!(
        items
            .iter()
            .any(|i| i["status"].as_str().unwrap().contains("Pulling from")),
        "{items:?}"
    );
    assert!(
        items.last().unwrap()["status"]
            .as_str()
            .unwrap()
            .contains("Downloaded newer image"),
        "{items:?}"
    );
    let image = alice
        .call_json("docker/image/inspect", json!({"image": reference}))
        .await
        .unwrap();
    assert!(
        image["tags"]
            .as_array()
            .unwrap()
            .contains(&json!(reference))
    );
    let _ = docker
        .remove_image(
            &reference,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

/// Reads a session's output until it contains `needle`.
async fn read_until(session: &mut TtySession, needle: &str) -> String {
    let mut seen = String::new();
    tokio::time::timeout(LONG, async {
        while !seen.contains(needle) {
            match session.reader.next().await.unwrap() {
                TtyEvent::Stdout(bytes) | TtyEvent::Stderr(bytes) => {
                    seen.push_str(&String::from_utf8_lossy(&bytes))
                }
                TtyEvent::Exit(code) => panic!("exited ({code}) before {needle:?}: {seen:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"));
    seen
}

async fn exit_of(session: &mut TtySession) -> i64 {
    tokio::time::timeout(LONG, async {
        loop {
            if let TtyEvent::Exit(code) = session.reader.next().await.unwrap() {
                return code;
            }
        }
    })
    .await
    .expect("an exit code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_sessions_type_resize_signal_and_exit() {
    let Some(pack) = daemon("tty_sessions_type_resize_signal_and_exit").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(&node, &alice, sleeper(), true).await;

    // exec with a terminal: its size, a resize, typed input, the exit code.
    let mut request = TtyRequest::new(c.id.clone(), TtyMode::Exec);
    request.token = Some("tok_alice".into());
    request.cmd = [
        "sh",
        "-c",
        "sleep 0.5; stty size; read a; stty size; read b; echo got:$b; exit 3",
    ]
    .map(String::from)
    .to_vec();
    request.cols = 100;
    request.rows = 30;
    let mut session = node.tty(&request).await.unwrap();
    assert!(session.tty);
    read_until(&mut session, "30 100").await;
    session.writer.resize(120, 40).await.unwrap();
    session.writer.stdin(b"go\n").await.unwrap();
    read_until(&mut session, "40 120").await;
    session.writer.stdin(b"hello tty\n").await.unwrap();
    // The terminal echoes the input; the command's answer follows.
    read_until(&mut session, "got:hello tty").await;
    assert_eq!(exit_of(&mut session).await, 3);

    // Ctrl-C as a byte reaches the foreground process through the terminal.
    request.cmd = [
        "sh",
        "-c",
        "trap 'echo trapped; exit 9' INT; echo ready; while true; do sleep 0.1; done",
    ]
    .map(String::from)
    .to_vec();
    let mut session = node.tty(&request).await.unwrap();
    read_until(&mut session, "ready").await;
    session.writer.stdin(&[0x03]).await.unwrap();
    read_until(&mut session, "trapped").await;
    assert_eq!(exit_of(&mut session).await, 9);

    // A signal by name.
    let mut session = node.tty(&request).await.unwrap();
    read_until(&mut session, "ready").await;
    session.writer.signal("SIGINT").await.unwrap();
    assert_eq!(exit_of(&mut session).await, 9);

    // End of input: `cat` sees it and the command goes on.
    request.cmd = ["sh", "-c", "cat; echo after-eof; exit 4"]
        .map(String::from)
        .to_vec();
    let mut session = node.tty(&request).await.unwrap();
    session.writer.stdin(b"line\n").await.unwrap();
    read_until(&mut session, "line").await;
    session.writer.eof().await.unwrap();
    read_until(&mut session, "after-eof").await;
    assert_eq!(exit_of(&mut session).await, 4);

    // Finishing the sending side ends the input too; output and exit code still arrive.
    let mut session = node.tty(&request).await.unwrap();
    session.writer.stdin(b"last\n").await.unwrap();
    let TtySession {
        writer, mut reader, ..
    } = session;
    writer.finish().unwrap();
    let mut seen = String::new();
    let code = tokio::time::timeout(LONG, async {
        loop {
            match reader.next().await.unwrap() {
                TtyEvent::Stdout(bytes) | TtyEvent::Stderr(bytes) => {
                    seen.push_str(&String::from_utf8_lossy(&bytes))
                }
                TtyEvent::Exit(code) => return code,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 4, "{seen:?}");
    assert!(seen.contains("after-eof"), "{seen:?}");

    // Cancelling kills the process.
    request.cmd = ["sh", "-c", "echo ready; exec sleep 4343"]
        .map(String::from)
        .to_vec();
    let mut session = node.tty(&request).await.unwrap();
    read_until(&mut session, "ready").await;
    assert!(processes(&alice, &c.id).await.contains("sleep 4343"));
    session.writer.cancel();
    let (conn, id) = (alice.clone(), c.id.clone());
    assert!(
        eventually(async || !processes(&conn, &id).await.contains("sleep 4343")).await,
        "the cancelled session's process survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_attach_and_access() {
    let Some(pack) = daemon("tty_attach_and_access").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    // A container whose main process is an interactive shell on a terminal.
    let c = container(
        &node,
        &alice,
        json!({"image": IMAGE, "cmd": ["sh", "-c", "read line; echo main:$line; exit 5"], "tty": true, "openStdin": true}),
        true,
    )
    .await;
    let mut request = TtyRequest::new(c.id.clone(), TtyMode::Attach);
    request.token = Some("tok_alice".into());

    // Other identities are refused before anything is attached.
    let mut bobs = request.clone();
    bobs.token = Some("tok_bob".into());
    match node.tty(&bobs).await {
        Err(TtyError::Refused(error)) => {
            assert_eq!(error.code, "CONTAINER_NOT_FOUND");
        }
        other => panic!("bob attached: {:?}", other.err()),
    }
    let mut anonymous = request.clone();
    anonymous.token = None;
    assert!(matches!(
        node.tty(&anonymous).await.err(),
        Some(TtyError::Refused(e)) if e.message == "authentication required"
    ));
    let mut missing = request.clone();
    missing.container = "alknet-no-such-container".into();
    missing.token = Some("tok_ops".into());
    missing.mode = TtyMode::Exec;
    assert!(matches!(
        node.tty(&missing).await.err(),
        Some(TtyError::Refused(e)) if e.code == "CONTAINER_NOT_FOUND"
    ));

    let mut session = node.tty(&request).await.unwrap();
    assert!(session.tty);
    session.writer.resize(90, 20).await.unwrap();
    session.writer.stdin(b"attached\n").await.unwrap();
    read_until(&mut session, "main:attached").await;
    assert_eq!(exit_of(&mut session).await, 5);
    let details = alice
        .call_json("docker/container/inspect", json!({"id": c.id}))
        .await
        .unwrap();
    assert_eq!(details["state"]["exitCode"], 5);

    // Sessions on a stopped container are refused with a reason.
    assert!(matches!(
        node.tty(&request).await.err(),
        Some(TtyError::Refused(e)) if e.code == "INVALID_INPUT" && e.message.contains("not running")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tty_command_passes_the_exit_code_through() {
    let Some(pack) = daemon("the_tty_command_passes_the_exit_code_through").await else {
        return;
    };
    let alknet = env!("CARGO_BIN_EXE_alknet");
    let config = std::env::temp_dir().join(format!("alknet-docker-{}.toml", std::process::id()));
    // alk_demo_admin_token, as in examples/demo-auth.toml.
    std::fs::write(
        &config,
        "[[tokens]]\nid = \"alice\"\nsha256 = \"2aa9859a5fe4465e7fb74c73e52a204892d21b2718c13e66ff54baa31dd92b63\"\nscopes = [\"docker\"]\n",
    )
    .unwrap();
    let mut serve = ChildGuard(
        std::process::Command::new(alknet)
            .args(["serve", "--listen", "127.0.0.1:0", "--docker", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    let (addr, pin) = (field("quic="), field("fingerprint="));
    // `--pin` goes right after the subcommand: after `--` it would belong to the command.
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(alknet)
            .arg(args[0])
            .args(["--pin", &pin])
            .args(&args[1..])
            .env("ALKNET_TOKEN", "alk_demo_admin_token")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let created = run(
        &[
            "call",
            &addr,
            "docker/container/create",
            &json!({"image": IMAGE, "cmd": ["sleep", "600"]}).to_string(),
        ],
        "",
    );
    assert!(created.status.success(), "{created:?}");
    let id = serde_json::from_slice::<Value>(&created.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _guard = TestContainer {
        id: id.clone(),
        pack: pack.clone(),
    };
    let started = run(
        &[
            "call",
            &addr,
            "docker/container/start",
            &json!({"id": id}).to_string(),
        ],
        "",
    );
    assert!(started.status.success(), "{started:?}");
    // Piped input gets no terminal: its end is never lost, however early it comes.
    for _ in 0..20 {
        let out = run(
            &[
                "tty",
                &addr,
                &id,
                "--",
                "sh",
                "-c",
                "read x; echo got:$x; echo err >&2; exit 42",
            ],
            "typed\n",
        );
        assert_eq!(out.status.code(), Some(42), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "got:typed\n",
            "{out:?}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{out:?}");
    }
    // A refused session: the error JSON on stderr, status 1.
    let out = run(&["tty", &addr, "alknet-no-such-container"], "");
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["code"], "CONTAINER_NOT_FOUND");
    drop(serve);
    let _ = std::fs::remove_file(config);
}

/// Bad input on `alknet/tty`: a clear error answer for a bad request, and a session that breaks
/// the chunk format ends with its process killed. The node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_bad_input_gets_an_error_and_loses_nothing() {
    let Some(pack) = daemon("tty_bad_input_gets_an_error_and_loses_nothing").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(&node, &alice, sleeper(), true).await;
    let options = ClientOptions::new(ServerVerification::pin(node.server.fingerprint()));
    let (_endpoint, conn) =
        alknet::quic::connect_alpn(&options, node.server.local_addr(), "localhost", ALPN_TTY)
            .await
            .unwrap();
    // The answer to a bad request: a length-prefixed `{"error": …}`, then the end.
    let answer = async |request: &[u8]| -> Value {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(request).await.unwrap();
        let _ = send.finish();
        let body = tokio::time::timeout(LONG, recv.read_to_end(1 << 20))
            .await
            .unwrap()
            .unwrap();
        assert!(body.len() > 4, "{body:?}");
        serde_json::from_slice(&body[4..]).unwrap()
    };
    let framed = |json: &str| {
        let mut frame = (json.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(json.as_bytes());
        frame
    };
    // A hostile length is refused before anything is buffered.
    let refused = answer(&0x7fff_ffffu32.to_be_bytes()).await;
    assert_eq!(refused["error"]["code"], "INVALID_INPUT", "{refused}");
    // Not JSON, an unknown field, a wrong type.
    for bad in [
        "not json",
        r#"{"container": "x", "shell": true}"#,
        r#"{"container": 5}"#,
    ] {
        let refused = answer(&framed(bad)).await;
        assert_eq!(
            refused["error"]["code"], "INVALID_INPUT",
            "{bad}: {refused}"
        );
    }
    // A session that sends a chunk for a stream that does not exist is ended, and its
    // process killed.
    let mut request = TtyRequest::new(c.id.clone(), TtyMode::Exec);
    request.token = Some("tok_alice".into());
    request.cmd = ["sh", "-c", "echo ready; exec sleep 4444"]
        .map(String::from)
        .to_vec();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&framed(&serde_json::to_string(&request).unwrap()))
        .await
        .unwrap();
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.unwrap();
    let mut ok = vec![0u8; u32::from_be_bytes(len) as usize];
    recv.read_exact(&mut ok).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&ok).unwrap()["ok"], true);
    let (cid, conn2) = (c.id.clone(), alice.clone());
    assert!(eventually(async || processes(&conn2, &cid).await.contains("sleep 4444")).await);
    send.write_all(&[9, 0, 0, 0, 1, b'x']).await.unwrap();
    assert!(
        eventually(async || !processes(&conn2, &cid).await.contains("sleep 4444")).await,
        "the process outlived a session that broke the format"
    );
    // The node still serves sessions.
    request.cmd = ["sh", "-c", "exit 8"].map(String::from).to_vec();
    let mut session = node.tty(&request).await.unwrap();
    assert_eq!(exit_of(&mut session).await, 8);
}

/// A pseudo-terminal for a child process: (master, slave).
fn open_pty(cols: u16, rows: u16) -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut master = 0;
    let mut slave = 0;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds into the integers we pass; we own them from here on.
    let result = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(result, 0, "openpty: {}", std::io::Error::last_os_error());
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

/// `alknet tty` on a real terminal: raw mode (the local terminal does not echo; the remote one
/// does), SIGWINCH carries the new size to the remote terminal, the exit code comes back, and
/// the terminal's settings are restored afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tty_command_on_a_terminal_goes_raw_and_follows_resizes() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let Some(pack) = daemon("the_tty_command_on_a_terminal_goes_raw_and_follows_resizes").await
    else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(&node, &alice, sleeper(), true).await;
    let (mut master, slave) = open_pty(100, 30);
    let termios_of = |fd: i32| {
        // SAFETY: tcgetattr fills the struct we pass.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut termios) }, 0);
        termios
    };
    let before = termios_of(slave.as_raw_fd());
    assert_ne!(before.c_lflag & libc::ECHO, 0);

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_alknet"));
    command
        .args([
            "tty",
            "--pin",
            &node.server.fingerprint().to_string(),
            "--token",
            "tok_alice",
        ])
        .arg(node.server.local_addr().to_string())
        .arg(&c.id)
        .args([
            "--",
            "sh",
            "-c",
            // At once: the terminal has its size before the command starts.
            "stty size; echo term:$TERM; read a; stty size; read b; exit $b",
        ])
        // The terminal type is the client's.
        .env("TERM", "alknet-test-term")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
    // controlling terminal is the pty, so the kernel sends it SIGWINCH.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();

    // Everything the child writes, collected by a reader thread.
    let screen = Arc::new(std::sync::Mutex::new(String::new()));
    let mut reader = master.try_clone().unwrap();
    let collected = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            collected
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_for = |needle: &str| {
        for _ in 0..200 {
            if screen.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {needle:?} on the screen: {:?}", screen.lock().unwrap());
    };

    wait_for("30 100");
    wait_for("term:alknet-test-term");
    // Raw mode while the session lasts.
    assert_eq!(termios_of(slave.as_raw_fd()).c_lflag & libc::ECHO, 0);
    // The terminal window grows: the kernel signals SIGWINCH, the session resizes.
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the struct we pass.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
        0
    );
    std::thread::sleep(Duration::from_millis(300));
    master.write_all(b"go\r").unwrap();
    wait_for("40 120");
    master.write_all(b"7\r").unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(7), "{:?}", screen.lock().unwrap());
    // The terminal is as it was.
    assert_ne!(termios_of(slave.as_raw_fd()).c_lflag & libc::ECHO, 0);
}

/// The pack's operations over the HTTP gateway: the same access rules, its declared HTTP
/// statuses, and the OpenAPI document describing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_operations_over_the_http_gateway() {
    let Some(pack) = daemon("docker_operations_over_the_http_gateway").await else {
        return;
    };
    let node = Node::start(pack).await;
    let addr = node
        .server
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = async |path: &str, token: Option<&str>, body: Value| -> (u16, Value) {
        let mut request = http.post(format!("http://{addr}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    };
    let (status, images) = post("/ops/docker/image/list", Some("tok_alice"), json!({})).await;
    assert_eq!(status, 200, "{images}");
    assert!(images["images"].is_array());
    let (status, error) = post("/ops/docker/image/list", None, json!({})).await;
    assert_eq!((status, error["code"].as_str()), (401, Some("FORBIDDEN")));
    let (status, error) = post(
        "/call",
        Some("tok_ops"),
        json!({"operation": "docker/container/inspect", "input": {"id": "alknet-no-such-container"}}),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("CONTAINER_NOT_FOUND"))
    );
    // Ownership between two users over HTTP, as over QUIC: alice's container does not exist
    // for bob.
    let (status, created) = post(
        "/ops/docker/container/create",
        Some("tok_alice"),
        json!({"image": IMAGE, "cmd": ["sleep", "600"], "env": ["GREETING=hi"]}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let mine = TestContainer {
        id: created["id"].as_str().unwrap().to_owned(),
        pack: node.pack.clone(),
    };
    let (status, _) = post(
        "/ops/docker/container/inspect",
        Some("tok_alice"),
        json!({"id": mine.id}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = post(
        "/ops/docker/container/inspect",
        Some("tok_bob"),
        json!({"id": mine.id}),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("CONTAINER_NOT_FOUND"))
    );
    let (_, bobs) = post(
        "/ops/docker/container/list",
        Some("tok_bob"),
        json!({"all": true}),
    )
    .await;
    assert!(!bobs.to_string().contains(&mine.id), "{bobs}");
    // Daemon conflicts and refusals are declared errors with their statuses.
    let (status, _) = post(
        "/ops/docker/container/start",
        Some("tok_alice"),
        json!({"id": mine.id}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = post(
        "/ops/docker/container/remove",
        Some("tok_alice"),
        json!({"id": mine.id}),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("CONTAINER_CONFLICT")),
        "{error}"
    );
    let (status, error) = post(
        "/ops/docker/container/create",
        Some("tok_alice"),
        json!({"image": IMAGE}),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("INVALID_CONTAINER_REQUEST")),
        "the test image has no command: {error}"
    );
    let openapi: Value = http
        .get(format!("http://{addr}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pull = &openapi["paths"]["/ops/docker/image/pull"]["post"];
    assert!(
        pull["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{pull}"
    );
    assert!(
        pull["responses"]["502"].is_object(),
        "IMAGE_PULL_FAILED is documented: {pull}"
    );
}

/// A graceful shutdown ends interactive sessions and exec subscriptions; their processes are
/// killed by the time it (and the pack's cleanup) returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_sessions_and_kills_their_processes() {
    let Some(pack) = daemon("shutdown_ends_sessions_and_kills_their_processes").await else {
        return;
    };
    let node = Node::start(pack).await;
    let alice = node.as_caller(Some("tok_alice")).await;
    let c = container(&node, &alice, sleeper(), true).await;
    let mut request = TtyRequest::new(c.id.clone(), TtyMode::Exec);
    request.token = Some("tok_alice".into());
    request.cmd = ["sh", "-c", "echo ready; exec sleep 4545"]
        .map(String::from)
        .to_vec();
    let mut session = node.tty(&request).await.unwrap();
    read_until(&mut session, "ready").await;
    // And an exec subscription, which the shutdown ends.
    let mut exec = alice
        .subscribe_json(
            "docker/container/exec",
            json!({"id": c.id, "cmd": ["sh", "-c", "echo started; exec sleep 4646"]}),
        )
        .await
        .unwrap();
    assert_eq!(exec.next().await.unwrap().unwrap()["text"], "started\n");
    let running = processes(&alice, &c.id).await;
    assert!(running.contains("sleep 4545") && running.contains("sleep 4646"));
    let Node { server, pack } = node;
    server.shutdown(Duration::from_secs(5)).await;
    pack.wait_for_cleanup(Duration::from_secs(10)).await;
    let end = exec.next().await.unwrap().unwrap_err();
    assert_eq!(end.message, "server shutting down");
    // Both gone once shutdown and cleanup return: asked straight from the daemon.
    let top = pack
        .docker()
        .top_processes(&c.id, None::<bollard::query_parameters::TopOptions>)
        .await
        .unwrap();
    let listed = format!("{:?}", top.processes);
    assert!(!listed.contains("sleep 4545"), "{listed}");
    assert!(!listed.contains("sleep 4646"), "{listed}");
    // The session ends saying why.
    match session.reader.next().await {
        Err(TtyError::Connection(why)) => assert_eq!(why, "the node is shutting down"),
        other => panic!("the session did not end with the shutdown: {other:?}"),
    }
}
