//! Real external clients against `alknet serve --demo --http`: schemathesis fuzzing the
//! OpenAPI document, and a Python client generated from it by openapi-python-client.
//!
//! The tools come from PyPI (`bash .ci/run` installs them). Without them these tests print
//! SKIPPED; with `ALKNET_REQUIRE_VALIDATORS` set (CI) a missing tool is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const ALKNET: &str = env!("CARGO_BIN_EXE_alknet");

struct Node {
    child: Child,
    http: String,
}

impl Node {
    fn start() -> Node {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Node {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo-auth.toml");
        let mut child = Command::new(ALKNET)
            .args([
                "serve",
                "--demo",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--config",
                config,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let http = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("http="))
            .expect("http= in the ready line")
            .to_owned();
        Node { child, http }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program args…` runs and succeeds; if not, the test is skipped (or, under
/// ALKNET_REQUIRE_VALIDATORS, fails) with the reason.
fn available(test: &str, program: &str, args: &[&str]) -> bool {
    let missing = match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => return true,
        Ok(_) => format!("`{program} {}` fails", args.join(" ")),
        Err(_) => format!("`{program}` is not installed"),
    };
    require_or_skip(test, program, &missing);
    false
}

/// Whether python3 can import `module`; if not, the test is skipped (or fails under
/// ALKNET_REQUIRE_VALIDATORS), naming what is really missing.
fn python_has(test: &str, module: &str, package: &str) -> bool {
    let missing = match Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
    {
        Ok(out) if out.status.success() => return true,
        Ok(_) => format!("the Python module `{module}` is not installed (pip install '{package}')"),
        Err(_) => "`python3` is not installed".to_owned(),
    };
    require_or_skip(test, &format!("python {module}"), &missing);
    false
}

fn require_or_skip(test: &str, group: &str, missing: &str) {
    assert!(
        std::env::var_os("ALKNET_REQUIRE_VALIDATORS").is_none(),
        "{test}: {missing}, and ALKNET_REQUIRE_VALIDATORS is set"
    );
    common::skipped(
        group,
        test,
        &format!(
            "{missing}; `bash .ci/run` installs it, ALKNET_REQUIRE_VALIDATORS=1 makes this a failure"
        ),
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alknet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn schemathesis_finds_no_failures() {
    if !available(
        "schemathesis_finds_no_failures",
        "schemathesis",
        &["--version"],
    ) {
        return;
    }
    let node = Node::start();
    // schemathesis keeps a cache in its working directory: not in the source tree.
    let dir = temp_dir("schemathesis");
    let out = Command::new("schemathesis")
        .current_dir(&dir)
        // The 3.2 variant: the same operations as /openapi.json, with event streams described
        // per event (`itemSchema`), which is how schemathesis checks each SSE event; the 3.1
        // document types a stream by its items, as generators read it (docs/gateway.md).
        .args(["run", &format!("http://{}/openapi-3.2.json", node.http)])
        .args([
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--request-timeout",
            "15",
        ])
        .args(["-H", "Authorization: Bearer alk_demo_admin_token"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}

#[test]
fn a_client_generated_from_openapi_calls_the_node() {
    if !available(
        "a_client_generated_from_openapi_calls_the_node",
        "openapi-python-client",
        &["--version"],
    ) {
        return;
    }
    let node = Node::start();
    let dir = temp_dir("pyclient");
    let document = dir.join("openapi.json");
    let answer = Command::new("curl")
        .args(["-sf", &format!("http://{}/openapi.json", node.http)])
        .output()
        .unwrap();
    assert!(answer.status.success());
    std::fs::write(&document, &answer.stdout).unwrap();
    let generated = Command::new("openapi-python-client")
        .args(["generate", "--meta", "none", "--path"])
        .arg(&document)
        .arg("--output-path")
        .arg(dir.join("alknet_client"))
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let script = r#"
import sys
from alknet_client.client import AuthenticatedClient, Client
from alknet_client.api.demo import demo_add, demo_admin, demo_fail
from alknet_client.models.demo_add_add_input import DemoAddAddInput
from alknet_client.models.demo_fail_fail_input import DemoFailFailInput

client = Client(base_url=sys.argv[1])
out = demo_add.sync(client=client, body=DemoAddAddInput(a=2, b=40))
assert out.sum_ == 42, out  # `sum` shadows a builtin, so the generator names it `sum_`
failed = demo_fail.sync_detailed(client=client, body=DemoFailFailInput(reason="generated"))
assert failed.status_code == 409, failed
assert b"DEMO_FAILED" in failed.content, failed.content
denied = demo_admin.sync_detailed(client=client)
assert denied.status_code == 401, denied
admin = AuthenticatedClient(base_url=sys.argv[1], token="alk_demo_admin_token")
allowed = demo_admin.sync(client=admin)
assert allowed.by == "admin", allowed
print("generated client ok")
"#;
    let run = Command::new("python3")
        .args(["-c", script, &format!("http://{}", node.http)])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("generated client ok"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_python_mcp_client_lists_and_calls_tools() {
    if !python_has(
        "the_python_mcp_client_lists_and_calls_tools",
        "mcp",
        "mcp>=2",
    ) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
    for (mode, flags) in [
        ("per-operation", &[][..]),
        ("gateway", &["--mcp-gateway"][..]),
    ] {
        let node = Node::start_with(flags);
        let out = Command::new("python3")
            .args([script, &format!("http://{}/mcp", node.http), mode])
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("mcp client ok"),
            "{mode}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
