//! The breaking-change gate on the command line: `diff` (formats, exit codes, `--allow`),
//! `lock`, `check --against`, and a running node as one side.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CODEGEN: &str = env!("CARGO_BIN_EXE_alknet-codegen");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    Command::new(CODEGEN).args(args).output().unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alknet-codegen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `schemas/bank.json` with `memo` required and `bank/ping` (deprecated) removed.
fn bank_v2() -> PathBuf {
    let mut bank: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schemas/bank.json")).unwrap())
            .unwrap();
    bank["$defs"]["Deposit"]["required"]
        .as_array_mut()
        .unwrap()
        .push("memo".into());
    bank["operations"].as_object_mut().unwrap().remove("ping");
    let path = temp("bank-v2.json");
    std::fs::write(&path, serde_json::to_string_pretty(&bank).unwrap()).unwrap();
    path
}

#[test]
fn the_projects_own_contracts_match_their_locks() {
    for (file, lock) in [
        ("schemas/bank.json", "schemas/locks/bank.json"),
        ("schemas/docker.json", "schemas/locks/docker.json"),
    ] {
        let out = run(&[
            "check",
            root().join(file).to_str().unwrap(),
            "--against",
            root().join(lock).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{file}: {out:?}");
    }
}

#[test]
fn diff_reports_breaking_changes_and_exits_1() {
    let lock = root().join("schemas/locks/bank.json");
    let new = bank_v2();
    let out = run(&["diff", lock.to_str().unwrap(), new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("breaking INPUT_REQUIRED_ADDED bank/deposit#/input_schema/properties/memo"),
        "{text}"
    );
    assert!(
        text.contains("warning  OPERATION_REMOVED_AFTER_DEPRECATION bank/ping#"),
        "{text}"
    );
    assert!(
        text.ends_with("1 breaking, 1 warning(s), 0 info\n"),
        "{text}"
    );

    // JSON and Markdown say the same.
    let out = run(&[
        "diff",
        lock.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["breaking"], 1);
    let out = run(&[
        "diff",
        lock.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| breaking | `INPUT_REQUIRED_ADDED` |"));

    // Allowing the rule passes; an unrelated rule does not.
    let out = run(&[
        "diff",
        lock.to_str().unwrap(),
        new.to_str().unwrap(),
        "--allow",
        "INPUT_REQUIRED_ADDED",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&[
        "diff",
        lock.to_str().unwrap(),
        new.to_str().unwrap(),
        "--allow",
        "OPERATION_REMOVED",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn lock_then_check_against_fails_until_the_lock_is_updated() {
    let lock = temp("bank.lock.json");
    let out = run(&[
        "lock",
        root().join("schemas/bank.json").to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let new = bank_v2();
    let out = run(&[
        "check",
        new.to_str().unwrap(),
        "--against",
        lock.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("breaking changes against"), "{stderr}");
    assert!(stderr.contains("INPUT_REQUIRED_ADDED"), "{stderr}");
    // Updated on purpose: it passes.
    let out = run(&["lock", new.to_str().unwrap(), "-o", lock.to_str().unwrap()]);
    assert!(out.status.success());
    let out = run(&[
        "check",
        new.to_str().unwrap(),
        "--against",
        lock.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn the_builder_refuses_to_generate_past_a_breaking_change() {
    let lock = root().join("schemas/locks/bank.json");
    let out_dir = temp("builder-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let error = alknet_codegen::Builder::new()
        .service(bank_v2())
        .against(&lock)
        .out_dir(&out_dir)
        .generate()
        .unwrap_err();
    assert!(
        error.to_string().contains("INPUT_REQUIRED_ADDED"),
        "{error}"
    );
    let written = alknet_codegen::Builder::new()
        .service(bank_v2())
        .against(&lock)
        .allow("INPUT_REQUIRED_ADDED")
        .out_dir(&out_dir)
        .generate()
        .unwrap();
    assert_eq!(written.len(), 1);
}

/// Without the `live` feature, a running node is refused with a way forward.
#[cfg(not(feature = "live"))]
#[test]
fn running_nodes_need_the_live_feature() {
    let out = run(&[
        "diff",
        "quic://127.0.0.1:4433",
        "schemas/bank.json",
        "--pin",
        "SHA256:00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`live` feature"),
        "{out:?}"
    );
}

/// With it, a lock is compared with a running node over QUIC; a wrong pin is a clear error.
#[cfg(feature = "live")]
#[test]
fn diff_reads_a_running_node() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        alknet::Server::bind(
            alknet::demo::registry(),
            alknet::ServerOptions::new("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap()
    });
    let node = format!("quic://{}", server.local_addr());
    let lock = root().join("schemas/locks/demo.json");
    let pin = server.fingerprint().to_string();
    let out = run(&[
        "diff",
        lock.to_str().unwrap(),
        &node,
        "--pin",
        &pin,
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    // An anonymous caller does not see `demo/admin` (it needs a scope): removed, for it.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(report.to_string().contains("\"demo/admin\""), "{report}");
    let wrong = format!("SHA256:{}", "0".repeat(64));
    let out = run(&["diff", lock.to_str().unwrap(), &node, "--pin", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&node),
        "{out:?}"
    );
    drop(server);
}
