//! Real external clients against `alknet serve --demo --http`, each used the way its users
//! use it: schemathesis fuzzing the OpenAPI document; clients generated from it by
//! openapi-python-client (every operation), @hey-api/openapi-ts, openapi-typescript +
//! openapi-fetch (TypeScript programs compiled with `tsc --strict`) and progenitor (Rust); the
//! Python and TypeScript MCP SDKs; and headless Chromium for CORS, EventSource and the
//! WebSocket `Origin` check. The programs are in `tests/clients/`.
//!
//! The tools come from PyPI, npm and Debian (`bash .ci/run` installs them; the npm ones under
//! `target/ci-tools`, or where `ALKNET_NODE_TOOLS` points). Without them these tests print
//! SKIPPED; with `ALKNET_REQUIRE_VALIDATORS` set (CI) a missing tool is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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

/// The programs under `tests/clients/`.
fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Writes the node's document at `route` (`/openapi.json`, …) to `dest`.
fn fetch_document(node: &Node, route: &str, dest: &Path) {
    let answer = Command::new("curl")
        .args(["-sf", &format!("http://{}{route}", node.http)])
        .output()
        .unwrap();
    assert!(answer.status.success(), "GET {route} failed");
    std::fs::write(dest, &answer.stdout).unwrap();
}

/// Runs `command` and returns its stdout, failing the test with everything it printed when
/// it does not succeed.
fn run(what: &str, command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The npm tools `.ci/run` installs (`node_modules` with typescript, the generators, the MCP
/// SDK and playwright-core): `ALKNET_NODE_TOOLS`, else `target/ci-tools/node_modules`.
fn node_tools(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ALKNET_NODE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-tools/node_modules")
        });
    if dir.join(".bin/tsc").exists() && dir.join("playwright-core").exists() {
        return Some(dir);
    }
    require_or_skip(
        test,
        "npm tools",
        &format!(
            "the npm tools are not in {} (typescript, @hey-api/openapi-ts, openapi-typescript, openapi-fetch, @modelcontextprotocol/sdk, playwright-core)",
            dir.display()
        ),
    );
    None
}

/// A scratch directory holding the TypeScript programs, with the npm tools as `node_modules`.
fn typescript_dir(tag: &str, tools: &Path) -> PathBuf {
    let dir = temp_dir(tag);
    for entry in std::fs::read_dir(clients_dir().join("ts")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::os::unix::fs::symlink(tools, dir.join("node_modules")).unwrap();
    dir
}

#[test]
fn python_clients_generated_from_openapi_call_every_operation() {
    let test = "python_clients_generated_from_openapi_call_every_operation";
    if !available(test, "openapi-python-client", &["--version"]) {
        return;
    }
    let node = Node::start();
    let dir = temp_dir("pyclient");
    // Both documents generate; the 3.0.3 variant's client is the one that can read a
    // subscription (as text), so it runs every operation.
    for (route, package) in [
        ("/openapi.json", "client_3_1"),
        ("/openapi-3.0.json", "alknet_client"),
    ] {
        let document = dir.join(format!("{package}.json"));
        fetch_document(&node, route, &document);
        run(
            &format!("openapi-python-client on {route}"),
            Command::new("openapi-python-client")
                .args(["generate", "--meta", "none", "--path"])
                .arg(&document)
                .arg("--output-path")
                .arg(dir.join(package)),
        );
    }
    let stdout = run(
        "the generated Python client",
        Command::new("python3")
            .arg(clients_dir().join("python_client.py"))
            .arg(format!("http://{}", node.http))
            .env("PYTHONPATH", &dir),
    );
    assert!(stdout.contains("python client ok"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn typescript_clients_generated_from_openapi_compile_and_call_the_node() {
    let test = "typescript_clients_generated_from_openapi_compile_and_call_the_node";
    let Some(tools) = node_tools(test) else {
        return;
    };
    let node = Node::start();
    let dir = typescript_dir("tsclients", &tools);
    fetch_document(&node, "/openapi.json", &dir.join("openapi.json"));
    let bin = tools.join(".bin");
    run(
        "@hey-api/openapi-ts",
        Command::new(bin.join("openapi-ts"))
            .args([
                "-i",
                "openapi.json",
                "-o",
                "gen",
                "-c",
                "@hey-api/client-fetch",
            ])
            .current_dir(&dir),
    );
    run(
        "openapi-typescript",
        Command::new(bin.join("openapi-typescript"))
            .args(["openapi.json", "-o", "gen-fetch/schema.d.ts"])
            .current_dir(&dir),
    );
    // tsc --strict over both programs and the generated code: the item type of a
    // subscription, closed inputs and typed errors are checked here, before anything runs.
    run(
        "tsc",
        Command::new(bin.join("tsc"))
            .args(["-p", "."])
            .current_dir(&dir),
    );
    let url = format!("http://{}", node.http);
    for (program, ok) in [
        ("out/hey_api.js", "hey-api client ok"),
        ("out/openapi_fetch.js", "openapi-fetch client ok"),
    ] {
        let stdout = run(
            program,
            Command::new("node").args([program, &url]).current_dir(&dir),
        );
        assert!(stdout.contains(ok), "{program}: {stdout}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_typescript_mcp_sdk_gets_tool_errors_as_results() {
    let test = "the_typescript_mcp_sdk_gets_tool_errors_as_results";
    let Some(tools) = node_tools(test) else {
        return;
    };
    let node = Node::start();
    let dir = typescript_dir("tsmcp", &tools);
    // Only the MCP program: the others need generated code.
    std::fs::write(
        dir.join("tsconfig.json"),
        std::fs::read_to_string(dir.join("tsconfig.json"))
            .unwrap()
            .replace(
                r#""include": ["*.ts", "gen/**/*.ts"]"#,
                r#""include": ["mcp_sdk.ts"]"#,
            ),
    )
    .unwrap();
    run(
        "tsc",
        Command::new(tools.join(".bin/tsc"))
            .args(["-p", "."])
            .current_dir(&dir),
    );
    let stdout = run(
        "the TypeScript MCP SDK",
        Command::new("node")
            .args(["out/mcp_sdk.js", &format!("http://{}/mcp", node.http)])
            .current_dir(&dir),
    );
    assert!(stdout.contains("mcp sdk client ok"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_progenitor_client_calls_the_node() {
    let test = "a_progenitor_client_calls_the_node";
    // Building progenitor and reqwest takes minutes on a cold machine: CI (which requires the
    // external tools) runs it, a plain `cargo test` asks for it.
    if std::env::var_os("ALKNET_REQUIRE_VALIDATORS").is_none()
        && std::env::var_os("ALKNET_TEST_PROGENITOR").is_none()
    {
        common::skipped(
            "progenitor",
            test,
            "builds progenitor (minutes when cold); set ALKNET_TEST_PROGENITOR=1 or ALKNET_REQUIRE_VALIDATORS=1",
        );
        return;
    }
    let node = Node::start();
    let dir = temp_dir("progenitor");
    let document = dir.join("openapi-3.0.json");
    fetch_document(&node, "/openapi-3.0.json", &document);
    let manifest = clients_dir().join("progenitor/Cargo.toml");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/progenitor-client");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        "cargo build of the progenitor client",
        Command::new(&cargo)
            .args(["build", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .env("ALKNET_OPENAPI_DOCUMENT", &document),
    );
    let stdout = run(
        "the progenitor client",
        Command::new(target.join("debug/alknet-progenitor-client"))
            .arg(format!("http://{}", node.http)),
    );
    assert!(stdout.contains("progenitor client ok"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_browser_page_uses_the_node_only_from_a_listed_origin() {
    let test = "a_browser_page_uses_the_node_only_from_a_listed_origin";
    let Some(tools) = node_tools(test) else {
        return;
    };
    let chromium = std::env::var("ALKNET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !available(test, &chromium, &["--version"]) {
        return;
    }
    // The page's port, chosen here so the node can list its origin.
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = Node::start_with(&["--cors", &format!("http://127.0.0.1:{page_port}")]);
    let dir = temp_dir("browser");
    std::fs::copy(clients_dir().join("browser.mjs"), dir.join("browser.mjs")).unwrap();
    std::os::unix::fs::symlink(&tools, dir.join("node_modules")).unwrap();
    let stdout = run(
        "headless Chromium",
        Command::new("node")
            .args([
                "browser.mjs",
                &format!("http://{}", node.http),
                &page_port.to_string(),
            ])
            .env("ALKNET_CHROMIUM", &chromium)
            .current_dir(&dir),
    );
    assert!(stdout.contains("browser ok"), "{stdout}");
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
