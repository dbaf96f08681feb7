//! The breaking-change gate against running nodes: `alknet-codegen` (feature `live`) reads a
//! node's contract through discovery, over QUIC and over the HTTP gateway. The command line
//! around it is tested in `alknet-codegen/tests/cli.rs`.

use alknet::{Server, ServerOptions};
use alknet_codegen::compat::{Remote, Source, load_source};
use alknet_spec::compat;
use alknet_spec::{SpecBundle, Visibility};

/// The demo operations an anonymous caller sees through discovery: external and public.
fn demo_external() -> SpecBundle {
    let bundle = alknet::demo::registry().spec_bundle();
    SpecBundle::new(
        bundle
            .operations
            .into_iter()
            .filter(|op| op.visibility == Visibility::External && op.access_control.is_public()),
    )
    .unwrap()
}

async fn demo_node() -> (Server, String) {
    let server = Server::bind(
        alknet::demo::registry(),
        ServerOptions::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let http = server
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (server, format!("http://{http}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_is_read_over_quic_and_http() {
    let (server, http) = demo_node().await;
    let quic = Source::Quic(server.local_addr().to_string());
    let remote = Remote {
        pin: Some(server.fingerprint().to_string()),
        token: None,
    };
    // Blocking reads (they run a runtime of their own): off this test's runtime.
    let (over_quic, over_http) = tokio::task::spawn_blocking(move || {
        (
            load_source(&quic, &remote).unwrap(),
            load_source(&Source::Http(http), &Remote::default()).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(over_quic, demo_external());
    // Over HTTP there is no connection to call back: `demo/ask_peer` is not listed.
    let mut without_peer = demo_external();
    without_peer
        .operations
        .retain(|op| op.name != "demo/ask_peer");
    assert_eq!(over_http, without_peer);
    assert_eq!(
        compat::diff(&over_quic, &over_http).rule_ids(),
        ["OPERATION_REMOVED"]
    );
    // Against the lock of the demo: the operations an anonymous caller cannot list read as
    // removed (`demo/admin` needs a scope; the internal `demo/secret` is no caller's contract).
    let lock = alknet_codegen::load_bundle(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/locks/demo.json"
    ))
    .unwrap();
    let mut rules = compat::diff(&lock, &over_quic).rule_ids();
    rules.sort();
    assert_eq!(rules, ["INTERNAL_OPERATION_REMOVED", "OPERATION_REMOVED"]);
}

/// The demo service's contract is locked: a change that breaks its callers fails here until
/// `schemas/locks/demo.json` is rewritten on purpose
/// (`alknet spec --demo > demo.json && alknet-codegen lock demo.json -o schemas/locks/demo.json`).
#[test]
fn the_demo_matches_its_lock() {
    let lock = alknet_codegen::load_bundle(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/locks/demo.json"
    ))
    .unwrap();
    let report = compat::diff(&lock, &alknet::demo::registry().spec_bundle());
    assert!(!report.has_breaking(&[]), "{}", report.to_text());
}
