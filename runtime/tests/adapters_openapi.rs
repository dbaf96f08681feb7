//! `from_openapi` (design §10) against real HTTP services: a FastAPI app (PyPI `fastapi`,
//! `uvicorn`, `sse-starlette`; `tests/openapi_service.py`) started by the test, a YAML
//! OpenAPI 3.0 document read from a file, and alknet's own `/openapi.json` (calls through the
//! import equal direct calls).

mod common;

use std::process::Stdio;
use std::time::Duration;

use alknet::adapters::ImportError;
use alknet::adapters::openapi::{ApiKey, ApiKeyLocation, Credentials, OpenApiImport};
use alknet::{
    CallOptions, Client, ClientOptions, Connection, Registry, Server, ServerOptions,
    ServerVerification,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The FastAPI service, stopped when dropped.
struct FastApi {
    base: String,
    process: tokio::process::Child,
}

impl FastApi {
    /// Starts the service, or says why it cannot (python3 or its packages missing): skipped
    /// loudly, and a failure where CI requires the external tools.
    async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, None).await
    }

    /// Starts the service, over TLS with the certificate and key in `tls` (PEM files).
    async fn start_with(
        test: &str,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Option<Self> {
        let missing = match std::process::Command::new("python3")
            .args(["-c", "import fastapi, uvicorn, sse_starlette"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => None,
            Ok(_) => Some(
                "python3 lacks fastapi, uvicorn or sse-starlette (pip install fastapi uvicorn sse-starlette)",
            ),
            Err(_) => Some("python3 is not installed"),
        };
        if let Some(reason) = missing {
            assert!(
                std::env::var_os("ALKNET_REQUIRE_VALIDATORS").is_none(),
                "required in CI: {reason}"
            );
            common::skipped("openapi fastapi", test, reason);
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = tokio::process::Command::new("python3");
        command
            .args([
                "-m",
                "uvicorn",
                "openapi_service:app",
                "--log-level",
                "warning",
            ])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--app-dir")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests"))
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some((cert, key)) = tls {
            command.arg("--ssl-certfile").arg(cert);
            command.arg("--ssl-keyfile").arg(key);
            let process = command.spawn().expect("uvicorn starts");
            // Up when it accepts connections (the test's HTTP client speaks no TLS).
            for _ in 0..150 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    let base = format!("https://127.0.0.1:{port}");
                    return Some(Self { base, process });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the FastAPI service did not come up over TLS on port {port}");
        }
        let process = command.spawn().expect("uvicorn starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..150 {
            if let Ok(response) = http.get(format!("{base}/openapi.json")).send().await
                && response.status().is_success()
            {
                return Some(Self { base, process });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the FastAPI service did not come up on {base}");
    }

    async fn stats(&self) -> Value {
        reqwest::get(format!("{}/stats", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn import(name: &str, document: String) -> OpenApiImport {
    OpenApiImport {
        name: name.to_owned(),
        document,
        base_url: None,
        credentials: Credentials::default(),
        ca_file: None,
        external: true,
    }
}

async fn serve(registry: Registry) -> (Server, Client, Connection) {
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
    (server, client, conn)
}

async fn collect(conn: &Connection, op: &str, input: Value) -> Vec<Result<Value, String>> {
    conn.subscribe_json(op, input)
        .await
        .unwrap()
        .map(|item| item.map_err(|e| e.code))
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastapi_service_becomes_forwarding_operations() {
    let Some(service) = FastApi::start("a_fastapi_service_becomes_forwarding_operations").await
    else {
        return;
    };
    let mut registry = Registry::new();
    let mut with_key = import("items", format!("{}/openapi.json", service.base));
    with_key.credentials.api_key = Some(ApiKey {
        name: "X-API-Key".into(),
        location: ApiKeyLocation::Header,
        value: "sesame".into(),
    });
    let imported = registry.import_openapi(with_key).await.unwrap();
    for op in [
        "getItem",
        "search",
        "createItem",
        "replaceItem",
        "deleteItem",
        "secret",
        "ticks",
        "motd",
        "liar",
        "slow",
    ] {
        let name = format!("items/{op}");
        assert!(
            imported.operations.contains(&name),
            "{name} in {imported:?}"
        );
    }
    // The one operation with a body that is not JSON is skipped, naming its place.
    assert_eq!(imported.skipped.len(), 1, "{:?}", imported.skipped);
    assert_eq!(imported.skipped[0].pointer, "#/paths/~1upload/post");
    assert!(
        imported.skipped[0]
            .reason
            .contains("application/octet-stream"),
        "{:?}",
        imported.skipped
    );
    // The same service without the key: its secret is refused with the declared status.
    let no_key = import("bare", format!("{}/openapi.json", service.base));
    registry.import_openapi(no_key).await.unwrap();
    let (_server, _client, conn) = serve(registry).await;

    // Path and query parameters, a declared error status with the body in details.
    assert_eq!(
        conn.call_json("items/getItem", json!({"item_id": 1}))
            .await
            .unwrap(),
        json!({"id": 1, "name": "hammer", "price": 9.5, "tax": null})
    );
    let missing = conn
        .call_json("items/getItem", json!({"item_id": 99, "verbose": true}))
        .await
        .unwrap_err();
    assert_eq!(missing.code, "HTTP_404", "{missing:?}");
    assert_eq!(missing.details, Some(json!({"detail": "no item 99"})));
    assert!(missing.message.contains("no item 99"), "{missing:?}");
    // Input is checked here against the document's schemas before anything is sent.
    let invalid = conn
        .call_json("items/getItem", json!({"item_id": "one"}))
        .await
        .unwrap_err();
    assert_eq!(invalid.code, "INVALID_INPUT");
    assert_eq!(
        conn.call_json(
            "items/search",
            json!({"q": "a b&c=d/é", "tags": ["x", "y z"]})
        )
        .await
        .unwrap(),
        json!({"q": "a b&c=d/é", "tags": ["x", "y z"], "limit": 10})
    );
    // A JSON body; 201; a declared 409.
    let created = conn
        .call_json("items/createItem", json!({"name": "saw", "price": 3}))
        .await
        .unwrap();
    assert_eq!(created["name"], "saw");
    let clash = conn
        .call_json("items/createItem", json!({"name": "saw", "price": 3}))
        .await
        .unwrap_err();
    assert_eq!(clash.code, "HTTP_409", "{clash:?}");
    // Path parameter, header parameter and body together.
    assert_eq!(
        conn.call_json(
            "items/replaceItem",
            json!({"item_id": 7, "x-request-id": "r-1", "body": {"name": "axe", "price": 1.5}})
        )
        .await
        .unwrap(),
        json!({"id": 7, "request": "r-1", "item": {"name": "axe", "price": 1.5, "tax": null}})
    );
    assert_eq!(
        conn.call_json("items/deleteItem", json!({"item_id": 7}))
            .await
            .unwrap(),
        Value::Null
    );
    assert_eq!(
        conn.call_json("items/motd", json!({})).await.unwrap(),
        json!("hello from FastAPI")
    );
    // Credentials from the import, not from the caller.
    assert_eq!(
        conn.call_json("items/secret", json!({})).await.unwrap(),
        json!({"secret": 42})
    );
    let refused = conn.call_json("bare/secret", json!({})).await.unwrap_err();
    assert_eq!(refused.code, "HTTP_401", "{refused:?}");
    // A service breaking its own schema gives an error, not a wrong answer.
    let lie = conn.call_json("items/liar", json!({})).await.unwrap_err();
    assert_eq!(lie.code, "INTERNAL");
    assert!(lie.message.contains("output schema"), "{lie:?}");

    // Server-Sent Events: a subscription, ended by the end of the stream or an error event.
    let spec = conn
        .call_json("services/schema", json!({"name": "items/ticks"}))
        .await
        .unwrap();
    assert_eq!(spec["op_type"], "subscription");
    assert_eq!(
        collect(&conn, "items/ticks", json!({"count": 3})).await,
        [
            Ok(json!({"n": 0})),
            Ok(json!({"n": 1})),
            Ok(json!({"n": 2}))
        ]
    );
    assert_eq!(
        collect(&conn, "items/ticks", json!({"count": 2, "fail": true})).await,
        [
            Ok(json!({"n": 0})),
            Ok(json!({"n": 1})),
            Err("STREAM_ERROR".to_owned())
        ]
    );
    let spec = conn
        .call_json("services/schema", json!({"name": "items/getItem"}))
        .await
        .unwrap();
    assert_eq!(spec["op_type"], "query");

    // The deadline bounds the request, and the service sees the client go.
    let before = service.stats().await;
    let late = conn
        .call_json_with(
            "items/slow",
            json!({"ms": 5000}),
            CallOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert_eq!(late.code, "TIMEOUT", "{late:?}");
    let mut cancelled = false;
    for _ in 0..100 {
        let now = service.stats().await;
        if now["slow_cancelled"].as_u64() > before["slow_cancelled"].as_u64() {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cancelled, "the service saw the abandoned request go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_goes_away_mid_stream_ends_the_subscription_with_an_error() {
    let test = "a_service_that_goes_away_mid_stream_ends_the_subscription_with_an_error";
    let Some(mut service) = FastApi::start(test).await else {
        return;
    };
    let mut registry = Registry::new();
    registry
        .import_openapi(import("items", format!("{}/openapi.json", service.base)))
        .await
        .unwrap();
    let (_server, _client, conn) = serve(registry).await;
    let mut ticks = conn
        .subscribe_json("items/ticks", json!({"count": 100000}))
        .await
        .unwrap();
    for n in 0..3 {
        assert_eq!(ticks.next().await.unwrap().unwrap(), json!({"n": n}));
    }
    service.process.kill().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ticks.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the subscription ends");
    let error = end.expect("an error, not a quiet end").unwrap_err();
    assert_eq!(error.code, "INTERNAL", "{error:?}");
    assert!(error.retryable, "{error:?}");
    assert!(
        error.message.contains("items"),
        "names the import: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_service_is_verified_against_the_system_roots_and_the_imports_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("alknet-openapi-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let test = "an_https_service_is_verified_against_the_system_roots_and_the_imports_ca";
    let Some(service) = FastApi::start_with(test, Some((&cert_file, &key_file))).await else {
        return;
    };
    let document = format!("{}/openapi.json", service.base);

    // Trusting the private CA: the document and the calls go over TLS.
    let mut registry = Registry::new();
    let mut trusted = import("tls", document.clone());
    trusted.ca_file = Some(ca_file.clone());
    let mut attempts = 0;
    let imported = loop {
        match registry.import_openapi(trusted.clone()).await {
            Ok(imported) => break imported,
            Err(error) if attempts < 50 => {
                attempts += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert!(imported.operations.contains(&"tls/getItem".to_owned()));
    // Without it, the system's roots do not know the service's certificate.
    let error = Registry::new()
        .import_openapi(import("tls", document))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ImportError::Unreachable { reason, .. } if reason.contains("certificate") || reason.contains("UnknownIssuer")),
        "{error}"
    );
    let (_server, _client, conn) = serve(registry).await;
    let item = conn
        .call_json("tls/getItem", json!({"item_id": 1}))
        .await
        .unwrap();
    assert_eq!(item["name"], "hammer");
    let _ = std::fs::remove_dir_all(dir);
}

const YAML_30: &str = r##"
openapi: 3.0.3
info: {title: items, version: "1"}
paths:
  /items/{item_id}:
    get:
      operationId: items.get
      parameters:
        - $ref: '#/components/parameters/ItemId'
      responses:
        200:
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Stored'}
        404:
          $ref: '#/components/responses/NotFound'
  /elsewhere:
    get:
      operationId: elsewhere
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: 'other.yaml#/Thing'}
components:
  parameters:
    ItemId: {name: item_id, in: path, required: true, schema: {type: integer}}
  responses:
    NotFound:
      description: missing
      content: {application/json: {schema: {type: object}}}
  schemas:
    Stored:
      type: object
      required: [id, name]
      properties:
        id: {type: integer}
        name: {type: string}
        tax: {type: number, nullable: true}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_openapi_30_file_with_a_base_url() {
    let Some(service) = FastApi::start("a_yaml_openapi_30_file_with_a_base_url").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("alknet-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("items.yaml");
    std::fs::write(&file, YAML_30).unwrap();
    let document = file.to_str().unwrap().to_owned();

    // A file whose document names no absolute server needs a base URL.
    let error = Registry::new()
        .import_openapi(import("file", document.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ImportError::Discovery { reason, .. } if reason.contains("base_url")),
        "{error}"
    );
    let mut registry = Registry::new();
    let mut with_base = import("file", document);
    with_base.base_url = Some(service.base.clone());
    let imported = registry.import_openapi(with_base).await.unwrap();
    assert_eq!(imported.operations, ["file/items/get"]);
    assert_eq!(imported.skipped.len(), 1);
    assert_eq!(imported.skipped[0].pointer, "#/paths/~1elsewhere/get");
    assert!(
        imported.skipped[0].reason.contains("other.yaml"),
        "{imported:?}"
    );
    let (_server, _client, conn) = serve(registry).await;
    let item = conn
        .call_json("file/items/get", json!({"item_id": 1}))
        .await
        .unwrap();
    assert_eq!(item["name"], "hammer");
    let missing = conn
        .call_json("file/items/get", json!({"item_id": 42}))
        .await
        .unwrap_err();
    assert_eq!(missing.code, "HTTP_404");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alknets_own_openapi_document_round_trips() {
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
    let direct_client = Client::new(ClientOptions::new(ServerVerification::pin(
        remote.fingerprint(),
    )))
    .unwrap();
    let direct = direct_client
        .connect(remote.local_addr(), "localhost")
        .await
        .unwrap();
    let mut registry = Registry::new();
    let imported = registry
        .import_openapi(import("self", format!("http://{http}/openapi.json")))
        .await
        .unwrap();
    assert!(
        imported.skipped.is_empty(),
        "alknet's own document maps whole: {:?}",
        imported.skipped
    );
    let (_server, _client, conn) = serve(registry).await;

    for (op, input) in [
        ("demo/add", json!({"a": 2, "b": 40})),
        ("demo/echo", json!({"message": "hi"})),
        ("demo/sleep", json!({"ms": 1})),
    ] {
        assert_eq!(
            conn.call_json(&format!("self/{op}"), input.clone())
                .await
                .unwrap(),
            direct.call_json(op, input).await.unwrap(),
            "{op}"
        );
    }
    // Kinds come back as declared (x-alknet-op-type), not guessed from POST.
    let spec = conn
        .call_json("services/schema", json!({"name": "self/demo/add"}))
        .await
        .unwrap();
    assert_eq!(spec["op_type"], "query");
    // Access rules published by alknet (`x-alknet-access`) apply here too.
    let admin = conn
        .call_json("self/demo/admin", json!({}))
        .await
        .unwrap_err();
    assert_eq!(admin.code, "FORBIDDEN", "{admin:?}");
    let ticks = json!({"count": 3, "intervalMs": 1});
    let through: Vec<Value> = collect(&conn, "self/demo/ticks", ticks.clone())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let straight: Vec<Value> = direct
        .subscribe_json("demo/ticks", ticks)
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(through, straight);
    // Resumable there, resumable here: the resume point goes on as `Last-Event-ID`.
    let resumed: Vec<Value> = conn
        .subscribe_json_with(
            "self/demo/ticks",
            json!({"count": 3, "intervalMs": 1}),
            alknet::CallOptions {
                resume_after: Some(2),
                ..alknet::CallOptions::default()
            },
        )
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(resumed, [json!({"n": 3})]);
    // A declared error comes back under its HTTP status, the call.error in details.
    let failed = conn
        .call_json("self/demo/fail", json!({"reason": "on purpose"}))
        .await
        .unwrap_err();
    assert_eq!(failed.code, "HTTP_409", "{failed:?}");
    let details = failed.details.unwrap();
    assert_eq!(details["code"], "DEMO_FAILED");
    assert_eq!(details["details"], json!({"reason": "on purpose"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_that_cannot_be_imported_are_refused_with_the_reason() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = Registry::new()
        .import_openapi(import("x", format!("http://{closed}/openapi.json")))
        .await
        .unwrap_err();
    assert!(matches!(error, ImportError::Unreachable { .. }), "{error}");

    let dir = std::env::temp_dir().join(format!("alknet-openapi-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let swagger = dir.join("swagger.json");
    std::fs::write(&swagger, r#"{"swagger": "2.0", "paths": {}}"#).unwrap();
    let error = Registry::new()
        .import_openapi(import("x", swagger.to_str().unwrap().to_owned()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Swagger 2.0"), "{error}");
    let error = Registry::new()
        .import_openapi(import("x/y", swagger.to_str().unwrap().to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(error, ImportError::BadName(_)), "{error}");

    // Two imports of one document under one name clash at start-up.
    let doc = dir.join("one.json");
    std::fs::write(
        &doc,
        r#"{"openapi": "3.1.0", "servers": [{"url": "http://127.0.0.1:9"}], "paths": {"/a": {"get": {"operationId": "a", "responses": {"200": {"description": "ok"}}}}}}"#,
    )
    .unwrap();
    let mut registry = Registry::new();
    registry
        .import_openapi(import("x", doc.to_str().unwrap().to_owned()))
        .await
        .unwrap();
    let error = registry
        .import_openapi(import("x", doc.to_str().unwrap().to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(error, ImportError::Registry { .. }), "{error}");
    // A service that is away at call time gives a retryable error.
    let (_server, _client, conn) = serve(registry).await;
    let away = conn.call_json("x/a", json!({})).await.unwrap_err();
    assert_eq!(away.code, "INTERNAL");
    assert!(away.retryable, "{away:?}");
    let _ = std::fs::remove_dir_all(dir);
}
