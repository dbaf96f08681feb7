//! The `alknet` binary, driven as a user would: `serve --demo`, then `call`, `subscribe`,
//! `list`, `schema` and `spec` against it, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ALKNET: &str = env!("CARGO_BIN_EXE_alknet");

struct Node {
    child: Child,
    addr: String,
    fingerprint: String,
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        let mut child = Command::new(ALKNET)
            .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("alknet serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // `alknet listening quic=ADDR fingerprint=SHA256:<hex> [http=ADDR]`
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 4, "ready line: {line:?}");
        assert_eq!(
            &fields[..2],
            ["alknet", "listening"],
            "ready line: {line:?}"
        );
        let field = |prefix: &str| {
            fields
                .iter()
                .find_map(|f| f.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("{prefix} in the ready line {line:?}"))
        };
        let addr = field("quic=").to_owned();
        assert!(!addr.ends_with(":0"), "the real port is printed: {addr}");
        let fingerprint = field("fingerprint=");
        assert!(fingerprint.starts_with("SHA256:") && fingerprint.len() == 71);
        Node {
            child,
            addr,
            fingerprint: fingerprint.to_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(ALKNET)
            .arg(args[0])
            .arg(&self.addr)
            .args(&args[1..])
            .args(["--pin", &self.fingerprint])
            .output()
            .unwrap()
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "alknet serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

#[test]
fn serve_call_subscribe_and_stop() {
    let node = Node::start(&[]);

    let out = node.run(&["call", "demo/add", r#"{"a": 2, "b": 40}"#]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_lines(&out.stdout), [json!({"sum": 42})]);

    let out = node.run(&[
        "subscribe",
        "demo/ticks",
        r#"{"count": 3, "intervalMs": 5}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );

    let out = node.run(&["list"]);
    let listed = &json_lines(&out.stdout)[0];
    assert!(listed["operations"].as_array().unwrap().len() >= 5);

    let out = node.run(&["schema", "demo/fail"]);
    assert_eq!(
        json_lines(&out.stdout)[0]["error_schemas"][0]["code"],
        "DEMO_FAILED"
    );

    // Errors: the call.error payload on stderr, exit status 1.
    for (args, code) in [
        (vec!["call", "demo/fail"], "DEMO_FAILED"),
        (vec!["call", "demo/secret"], "NOT_FOUND"),
        (
            vec!["call", "demo/add", r#"{"a": "x", "b": 1}"#],
            "INVALID_INPUT",
        ),
        (vec!["call", "demo/add", "not json"], "INVALID_INPUT"),
        (
            vec!["subscribe", "demo/add", r#"{"a": 1, "b": 1}"#],
            "INVALID_OPERATION_TYPE",
        ),
    ] {
        let out = node.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty());
        let error = &json_lines(&out.stderr)[0];
        assert_eq!(error["code"], code, "{args:?}");
    }

    // A call in flight when SIGTERM arrives still gets its answer.
    let in_flight = Command::new(ALKNET)
        .args([
            "call",
            &node.addr,
            "demo/sleep",
            r#"{"ms": 2000}"#,
            "--pin",
            &node.fingerprint,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Time for the caller (a debug binary, on a loaded machine: other tests start nodes too)
    // to start, connect and send its request before the stop.
    std::thread::sleep(Duration::from_millis(1200));
    let status = node.terminate();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    let out = in_flight.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_lines(&out.stdout), [json!({"sleptMs": 2000})]);
}

#[test]
fn serve_with_the_http_gateway() {
    use std::io::{Read, Write as _};
    let mut child = Command::new(ALKNET)
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--allow-host",
            "node.example",
        ])
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
        .expect("the ready line names the HTTP address")
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&http).unwrap();
    let body = r#"{"operation": "demo/add", "input": {"a": 1, "b": 2}}"#;
    write!(stream, "POST /call HTTP/1.1\r\nHost: node.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"sum":3}"#), "{answer}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn trust_must_be_explicit_and_pins_are_checked() {
    let node = Node::start(&[]);
    let out = Command::new(ALKNET)
        .args(["call", &node.addr, "demo/echo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pin"));

    let wrong = format!("SHA256:{}", "ab".repeat(32));
    let out = Command::new(ALKNET)
        .args(["call", &node.addr, "demo/echo", "--pin", &wrong])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));

    let out = Command::new(ALKNET)
        .args(["call", &node.addr, "demo/echo", "[1]", "--insecure"])
        .output()
        .unwrap();
    assert_eq!(json_lines(&out.stdout), [json!([1])]);
    node.terminate();
}

#[test]
fn serve_with_a_pem_certificate_and_bad_files() {
    let dir = std::env::temp_dir().join(format!("alknet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let identity = alknet::TlsIdentity::self_signed(&["localhost"]).unwrap();
    let (cert, key) = identity.to_pem();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let cert_path = dir.join("cert.pem").display().to_string();
    let key_path = dir.join("key.pem").display().to_string();

    let node = Node::start(&["--cert", &cert_path, "--key", &key_path]);
    assert_eq!(node.fingerprint, identity.fingerprint().to_string());
    let out = node.run(&["call", "demo/echo", r#""hi""#]);
    assert_eq!(json_lines(&out.stdout), [json!("hi")]);
    node.terminate();

    let out = Command::new(ALKNET)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "/nonexistent/c.pem",
            "--key",
            &key_path,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c.pem"));
    std::fs::remove_dir_all(&dir).unwrap();

    // `--docker` with no daemon behind the socket refuses to start, naming the socket.
    let out = Command::new(ALKNET)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--docker",
            "/nonexistent/docker.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/docker.sock"), "{stderr}");
    assert!(out.stdout.is_empty(), "no ready line");
}

#[test]
fn spec_prints_the_demo_bundle() {
    let out = Command::new(ALKNET)
        .args(["spec", "--demo"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let bundle =
        alknet::spec::SpecBundle::from_json(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let names: Vec<&str> = bundle
        .operations
        .iter()
        .map(|op| op.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "demo/add",
            "demo/admin",
            "demo/ask_peer",
            "demo/compose",
            "demo/echo",
            "demo/fail",
            "demo/secret",
            "demo/sleep",
            "demo/ticks",
            "demo/whoami"
        ]
    );
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("alknet-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tokens_and_client_certificates_from_the_command_line() {
    let dir = temp_dir("auth");
    // A token made by `alknet token new`, pasted into a config file.
    let out = Command::new(ALKNET)
        .args(["token", "new", "--id", "carol", "--scope", "admin"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap().to_owned();
    assert!(token.starts_with("alk_"));
    let token_lines: String = text
        .lines()
        .skip_while(|l| *l != "[[tokens]]")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        !token_lines.contains(&token),
        "the config lines hold only the hash"
    );

    // A client certificate made by `alknet cert new`.
    let out = Command::new(ALKNET)
        .args([
            "cert",
            "new",
            "--out",
            dir.to_str().unwrap(),
            "--name",
            "laptop",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let peer_lines: String = text
        .lines()
        .skip_while(|l| *l != "[[peers]]")
        .map(|l| format!("{l}\n"))
        .collect();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("laptop.key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        key_mode & 0o077,
        0,
        "the private key is readable by its owner only"
    );

    let config = dir.join("auth.toml");
    std::fs::write(&config, format!("{token_lines}\n{peer_lines}")).unwrap();
    let node = Node::start(&["--config", config.to_str().unwrap()]);

    let whoami = |extra: &[&str]| {
        let mut args = vec!["call", "demo/whoami"];
        args.extend_from_slice(extra);
        json_lines(&node.run(&args).stdout)[0].clone()
    };
    assert_eq!(whoami(&[]), json!(null));
    assert_eq!(
        whoami(&["--token", &token]),
        json!({"id": "carol", "scopes": ["admin"]})
    );
    let cert = dir.join("laptop.cert.pem");
    let key = dir.join("laptop.key.pem");
    let cert_args = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    assert_eq!(whoami(&cert_args), json!({"id": "laptop", "scopes": []}));

    let out = node.run(&["call", "demo/admin"]);
    assert_eq!(
        json_lines(&out.stderr)[0]["message"],
        "authentication required"
    );
    let out = node.run(&["call", "demo/admin", "--token", &token]);
    assert_eq!(
        json_lines(&out.stdout),
        [json!({"ok": true, "by": "carol"})]
    );
    let out = node.run(&["call", "demo/ask_peer"]);
    assert_eq!(
        json_lines(&out.stdout),
        [json!({"peerSays": {"name": "alknet cli"}})]
    );
    node.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_config_refuses_to_start_naming_file_and_line() {
    let dir = temp_dir("badconfig");
    let cases = [
        (
            "[[peers]]\nid = \"x\"\nfingerprint = \"SHA256:nothex\"\n",
            ":3:",
            "malformed fingerprint",
        ),
        (
            "[[tokens]]\nid = \"x\"\nsha256 = \"abc\"\n",
            ":3:",
            "sha256",
        ),
        (
            "[[tokens]]\nid = \"x\"\nsha = \"abc\"\n",
            ":3:",
            "unknown field",
        ),
        ("this is not toml\n", ":1:", ""),
    ];
    for (i, (text, line, problem)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(ALKNET)
            .args([
                "serve",
                "--demo",
                "--listen",
                "127.0.0.1:0",
                "--config",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text:?} must refuse to start");
        assert!(out.stdout.is_empty(), "no ready line");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}{line}", path.display());
        assert!(
            stderr.contains(&expected) && stderr.contains(problem),
            "{stderr}"
        );
    }
    let missing = Command::new(ALKNET)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/auth.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/auth.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_example_config_works_with_the_readme_tokens() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo-auth.toml");
    let node = Node::start(&["--config", config]);
    let out = node.run(&["call", "demo/admin", "--token", "alk_demo_admin_token"]);
    assert_eq!(
        json_lines(&out.stdout),
        [json!({"ok": true, "by": "admin"})]
    );
    let out = node.run(&["call", "demo/admin", "--token", "alk_demo_reader_token"]);
    assert_eq!(json_lines(&out.stderr)[0]["code"], "FORBIDDEN");
    node.terminate();
}

#[test]
fn imports_from_the_config_file_and_the_command_line() {
    let dir = temp_dir("imports");
    let b = Node::start(&[]);
    let c = Node::start(&[]);
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[[imports]]\nname = \"b\"\ncall = \"{}\"\npin = \"{}\"\nexternal = true\n",
            b.addr, b.fingerprint
        ),
    )
    .unwrap();
    let import_c = format!("c={}", c.addr);
    // A node whose HTTP gateway's OpenAPI document is imported (from_openapi).
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = format!("127.0.0.1:{http_port}");
    let h = Node::start(&["--http", &http]);
    let import_h = format!("h=http://{http}/openapi.json");
    let a = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--import-call",
        &import_c,
        "--import-pin",
        &c.fingerprint,
        "--import-openapi",
        &import_h,
        "--import-external",
    ]);
    for op in ["b/demo/add", "c/demo/add", "h/demo/add"] {
        let out = a.run(&["call", op, r#"{"a": 40, "b": 2}"#]);
        assert!(out.status.success(), "{op}: {out:?}");
        assert_eq!(json_lines(&out.stdout), [json!({"sum": 42})]);
    }
    // An import that cannot be reached stops the node from starting, naming it.
    let nowhere = "d=127.0.0.1:9";
    let out = Command::new(ALKNET)
        .args(["serve", "--listen", "127.0.0.1:0", "--import-call", nowhere])
        .args(["--import-pin", &c.fingerprint])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no ready line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("import `d`"), "{stderr}");
    a.terminate();
    b.terminate();
    c.terminate();
    h.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}
