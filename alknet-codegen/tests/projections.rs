//! Service files → bundles → OpenAPI / MCP: golden files, the format's own schema, error
//! messages, and the real external validators.

use std::path::{Path, PathBuf};
use std::process::Command;

use alknet_codegen::{OpenApiVersion, load, mcp_tools, openapi, to_pretty_json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every service file under `schemas/`, and the demo node's bundle.
fn inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json") && !p.ends_with("service.schema.json")
        })
        .collect();
    files.sort();
    files.push(root().join("runtime/tests/golden/demo-spec-bundle.json"));
    files
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} changed: review, then UPDATE_GOLDEN=1"
    );
}

#[test]
fn golden_projections_of_the_bank_service() {
    let service = load(root().join("schemas/bank.json")).unwrap();
    golden(
        "bank.openapi.json",
        &to_pretty_json(&openapi(&service, OpenApiVersion::V3_1, &[])),
    );
    golden(
        "bank.openapi-3.0.json",
        &to_pretty_json(&openapi(&service, OpenApiVersion::V3_0, &[])),
    );
    golden("bank.mcp.json", &to_pretty_json(&mcp_tools(&service)));
    golden("bank.bundle.json", &service.bundle.to_json_pretty());
}

#[test]
fn service_files_follow_their_own_schema() {
    let format: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/service.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&format).expect("the format schema compiles");
    for file in inputs()
        .iter()
        .filter(|f| f.starts_with(root().join("schemas")))
    {
        let document: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    // And the schema rejects what the loader rejects at the format level.
    let bad: serde_json::Value =
        serde_json::json!({"service": "x", "operations": {"a": {"kind": "sometimes"}}});
    assert!(!validator.is_valid(&bad));
}

#[test]
fn bad_service_files_name_the_file_and_pointer() {
    let cases = [
        (
            "bad_ref.json",
            "/operations/get/input/properties/x/$ref",
            "bad $ref `#/$defs/Missing`",
        ),
        (
            "unsupported_keyword.json",
            "/$defs/Tree/unevaluatedProperties",
            "`unevaluatedProperties` is not supported",
        ),
        (
            "duplicate_operation.json",
            "/operations/get",
            "appears twice",
        ),
        ("bad_name.json", "/operations/get.all", "contains `.`"),
        ("invalid_json.json", "", "trailing comma"),
        (
            "unknown_key.json",
            "/operations/get/inptu",
            "unknown key `inptu`",
        ),
        (
            "resumable_query.json",
            "/operations/get/resumable",
            "only a subscription can be resumable",
        ),
    ];
    for (file, pointer, problem) in cases {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/bad")
            .join(file);
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains(file), "{file}: {error}");
        assert!(
            error.contains(&format!(
                "at `{}`",
                if pointer.is_empty() { "/" } else { pointer }
            )),
            "{file}: {error}"
        );
        assert!(error.contains(problem), "{file}: {error}");
    }
    let error = load("tests/bad/invalid_json.json").unwrap_err().to_string();
    assert!(
        error.contains("invalid_json.json:4:"),
        "syntax errors carry the line: {error}"
    );
}

/// Finds an external tool: `$NAME_VAR` if set, else the locations `.ci/run` installs to, else
/// PATH. Without it the test says "skipped" loudly — and fails when CI requires the tools.
fn tool(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn require_or_skip(name: &str) {
    let required = std::env::var_os("ALKNET_REQUIRE_VALIDATORS").is_some();
    assert!(
        !required,
        "{name} is required (ALKNET_REQUIRE_VALIDATORS is set) but was not found"
    );
    skipped(&format!(
        "SKIPPED: {name} not found; `bash .ci/run` installs it (set ALKNET_REQUIRE_VALIDATORS=1 to make this a failure)"
    ));
}

#[test]
fn generated_openapi_passes_the_external_validators() {
    let dir = std::env::temp_dir().join(format!("alknet-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut documents = Vec::new();
    for input in inputs() {
        let service = load(&input).unwrap();
        let name = input.file_stem().unwrap().to_string_lossy().to_string();
        let servers = ["https://api.example".to_owned()];
        for (version, suffix) in [
            (OpenApiVersion::V3_1, "openapi"),
            (OpenApiVersion::V3_0, "openapi-3.0"),
            (OpenApiVersion::V3_2, "openapi-3.2"),
        ] {
            let out = dir.join(format!("{name}.{suffix}.json"));
            std::fs::write(&out, to_pretty_json(&openapi(&service, version, &servers))).unwrap();
            documents.push(out);
        }
    }
    match tool("OPENAPI_SPEC_VALIDATOR", &["openapi-spec-validator"]) {
        Some(validator) => {
            for document in &documents {
                let out = Command::new(&validator).arg(document).output().unwrap();
                assert!(
                    out.status.success(),
                    "openapi-spec-validator {}: {}{}",
                    document.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        None => require_or_skip("openapi-spec-validator"),
    }
    match tool(
        "REDOCLY",
        &["/opt/alknet-npm/node_modules/.bin/redocly", "redocly"],
    ) {
        Some(redocly) => {
            for document in &documents {
                // The 3.0 variant writes "T or null" as `anyOf: [T], nullable: true`, the form
                // 3.0 generators read as an optional T, which 3.0.3's text gives no effect without
                // `type` (alknet_spec::openapi::v3_0): that one rule is off for it.
                let mut lint = Command::new(&redocly);
                lint.args(["lint", "--extends=spec", "--format=stylish"]);
                if document.to_string_lossy().ends_with("openapi-3.0.json") {
                    lint.arg("--skip-rule=nullable-type-sibling");
                }
                let out = lint.arg(document).current_dir(&dir).output().unwrap();
                assert!(
                    out.status.success(),
                    "redocly lint {}: {}{}",
                    document.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        None => require_or_skip("redocly (@redocly/cli@2.77.0)"),
    }
    // spectral's `spectral:oas` ruleset: no errors, and at most 5 warnings per document (the
    // one expected: no `info.contact`, which a service file does not say).
    let installed = root().join("target/ci-tools/node_modules/.bin/spectral");
    match tool("SPECTRAL", &[installed.to_str().unwrap(), "spectral"]) {
        Some(spectral) => {
            std::fs::write(dir.join(".spectral.yaml"), "extends: [\"spectral:oas\"]\n").unwrap();
            // spectral 6 knows OpenAPI up to 3.1.
            for document in documents
                .iter()
                .filter(|d| !d.to_string_lossy().ends_with("3.2.json"))
            {
                let out = Command::new(&spectral)
                    .args(["lint", "--format", "json", "--quiet"])
                    .arg(document)
                    .current_dir(&dir)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let findings: Vec<serde_json::Value> = serde_json::from_str(text.trim())
                    .unwrap_or_else(|e| panic!("spectral {}: {e}: {text}", document.display()));
                let errors = findings.iter().filter(|f| f["severity"] == 0).count();
                let warnings = findings.iter().filter(|f| f["severity"] == 1).count();
                assert!(
                    errors == 0 && warnings <= 5,
                    "spectral {}: {errors} errors, {warnings} warnings: {findings:#?}",
                    document.display()
                );
            }
        }
        None => require_or_skip("spectral (@stoplight/spectral-cli@6.16.3)"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn golden_rust_and_determinism() {
    let path = root().join("schemas/bank.json");
    let service = load(&path).unwrap();
    let first = alknet_codegen::rust_source(&service, &path).unwrap();
    let second = alknet_codegen::rust_source(&load(&path).unwrap(), &path).unwrap();
    assert_eq!(first, second, "the same input gives the same bytes");
    golden("bank.rs", &first);
    for needle in [
        "pub trait BankService",
        "pub fn register<S: BankService>",
        "pub struct BankClient",
        "pub enum DepositError",
        "pub struct DepositOp",
        "fn audit_rebuild(",
    ] {
        assert!(first.contains(needle), "missing {needle}");
    }
    assert!(
        !first.contains("pub async fn audit_rebuild"),
        "internal operations get no client method"
    );
}

#[test]
fn what_typify_cannot_handle_is_an_error_or_a_warning_naming_the_place() {
    // A bundle (not checked like a service file) whose output refers to a missing definition.
    let bundle = serde_json::json!({"alknet": 1, "operations": [{
        "name": "odd/get", "op_type": "query",
        "output_schema": {"type": "object", "properties": {"x": {"$ref": "#/$defs/Nowhere"}}}
    }]});
    let dir = std::env::temp_dir().join(format!("alknet-typify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("odd.json");
    std::fs::write(&path, bundle.to_string()).unwrap();
    let service = load(&path).unwrap();
    let error = alknet_codegen::rust_source(&service, &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("odd.json") && error.contains("/operations/0/output_schema"),
        "{error}"
    );

    let unsupported = serde_json::json!({"alknet": 1, "operations": [{
        "name": "odd/get", "op_type": "query",
        "input_schema": {"type": "object", "unevaluatedProperties": false}
    }]});
    // What the Rust type cannot say is left out of the type, with a warning naming the place
    // (the node still checks calls against the whole schema).
    std::fs::write(&path, unsupported.to_string()).unwrap();
    let (_, warnings) = alknet_codegen::rust_source_with_warnings(
        &load(&path).unwrap(),
        &path,
        alknet_codegen::Formats::Strings,
    )
    .expect("generates, wider");
    assert_eq!(
        warnings
            .iter()
            .map(|w| w.pointer.as_str())
            .collect::<Vec<_>>(),
        ["/operations/0/input_schema/unevaluatedProperties"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cli_writes_and_checks_generated_files() {
    let cli = env!("CARGO_BIN_EXE_alknet-codegen");
    let dir = std::env::temp_dir().join(format!("alknet-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let service = root().join("schemas/bank.json");
    for (command, file) in [
        ("rust", "bank.rs"),
        ("openapi", "bank.openapi.json"),
        ("mcp", "bank.mcp.json"),
    ] {
        let out = dir.join(file);
        let run = |extra: &[&str]| {
            Command::new(cli)
                .arg(command)
                .arg(&service)
                .arg("-o")
                .arg(&out)
                .args(extra)
                .output()
                .unwrap()
        };
        assert!(run(&[]).status.success(), "{command}");
        assert!(
            run(&["--check"]).status.success(),
            "{command}: fresh file passes --check"
        );
        std::fs::write(&out, "stale").unwrap();
        let stale = run(&["--check"]);
        assert!(
            !stale.status.success(),
            "{command}: a stale file fails --check"
        );
        assert!(String::from_utf8_lossy(&stale.stderr).contains("stale"));
    }
    let bad = Command::new(cli)
        .args(["rust"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad/bad_ref.json"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("bad_ref.json: at `/operations/get/input/properties/x/$ref`")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Docker pack's code in the runtime is what `alknet-codegen rust schemas/docker.json`
/// writes: the service file is the source of truth. `UPDATE_GOLDEN=1` regenerates it (so does
/// `cargo run -p alknet-codegen -- rust schemas/docker.json -o runtime/src/docker/api.rs`).
#[test]
fn the_docker_pack_is_generated_from_its_service_file() {
    let path = root().join("schemas/docker.json");
    let generated = alknet_codegen::rust_source(&load(&path).unwrap(), &path).unwrap();
    let committed = root().join("runtime/src/docker/api.rs");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&committed, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap();
    assert!(
        on_disk == generated,
        "runtime/src/docker/api.rs is not what schemas/docker.json generates: run \
         `cargo run -p alknet-codegen -- rust schemas/docker.json -o runtime/src/docker/api.rs`"
    );
}

/// Says that a test was skipped where `cargo test` shows it: libtest captures `eprintln!` of
/// passing tests, not writes to the stderr handle.
fn skipped(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// `patternProperties` (package.json's `scripts`-like maps, tox's sections) generate
/// String-keyed maps: the generated code never needs `regress`, and it parses.
#[test]
fn pattern_properties_need_no_extra_crate() {
    let dir = std::env::temp_dir().join(format!("alknet-codegen-pp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("maps.json");
    std::fs::write(
        &path,
        r#"{
          "service": "maps",
          "operations": {
            "put": {
              "kind": "mutation",
              "input": {
                "type": "object",
                "properties": {
                  "scripts": {
                    "type": "object",
                    "patternProperties": {"^[a-z][a-z0-9:-]*$": {"type": "string"}},
                    "additionalProperties": false
                  }
                }
              },
              "output": {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}}
            }
          }
        }"#,
    )
    .unwrap();
    let service = load(&path).unwrap();
    let source = alknet_codegen::rust_source(&service, &path).unwrap();
    assert!(!source.contains("regress"), "{source}");
    syn::parse_file(&source).expect("the generated code parses");
    let compact: String = source.split_whitespace().collect();
    assert!(
        compact.contains(
            "pubscripts:::std::collections::HashMap<::std::string::String,::std::string::String,>"
        ),
        "scripts is a String-keyed map: {source}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
