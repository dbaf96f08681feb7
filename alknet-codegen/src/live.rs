//! Reading a running node's spec bundle through discovery (feature `live`): over the call
//! protocol with the alknet runtime, or over the HTTP gateway with ureq. Discovery lists the
//! external operations the caller may call (`services/list`), then each one's full spec
//! (`services/schema`), so the bundle is what that caller sees.

use std::time::Duration;

use alknet_spec::{OperationSpec, SpecBundle};
use serde_json::{Value, json};

use crate::CodegenError;
use crate::compat::{Remote, Source};

/// How long reading a node may take in all.
const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn fetch(source: &Source, remote: &Remote) -> Result<SpecBundle, CodegenError> {
    let error = |message: String| CodegenError::Source {
        node: source.describe(),
        message,
    };
    let specs = match source {
        Source::Quic(addr) => quic(addr, remote).map_err(error)?,
        Source::Http(url) => http(url, remote).map_err(error)?,
        Source::File(path) => return crate::load_bundle(path),
    };
    SpecBundle::new(specs).map_err(|e| CodegenError::Source {
        node: source.describe(),
        message: format!("the node's specs do not form a bundle: {e}"),
    })
}

/// The names `services/list` answered.
fn names(list: &Value) -> Result<Vec<String>, String> {
    list["operations"]
        .as_array()
        .ok_or_else(|| format!("`services/list` answered without `operations`: {list}"))?
        .iter()
        .map(|op| {
            op["name"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("an operation without a name: {op}"))
        })
        .collect()
}

fn spec(value: Value) -> Result<OperationSpec, String> {
    serde_json::from_value(value).map_err(|e| format!("`services/schema` answered a bad spec: {e}"))
}

fn quic(addr: &str, remote: &Remote) -> Result<Vec<OperationSpec>, String> {
    let pin = remote
        .pin
        .as_deref()
        .ok_or("quic:// needs --pin SHA256:<hex> (the fingerprint from the node's ready line)")?;
    let fingerprint = pin.parse().map_err(|e| format!("--pin: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let work = async {
            let addr = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| format!("cannot resolve `{addr}`: {e}"))?
                .next()
                .ok_or_else(|| format!("`{addr}` resolves to no address"))?;
            let mut options =
                alknet::ClientOptions::new(alknet::ServerVerification::pin(fingerprint));
            options.auth_token = remote.token.clone();
            let client = alknet::Client::new(options).map_err(|e| e.to_string())?;
            let conn = client
                .connect(addr, "localhost")
                .await
                .map_err(|e| e.to_string())?;
            let list = conn
                .call_json("services/list", json!({}))
                .await
                .map_err(|e| format!("services/list: {e}"))?;
            let mut specs = Vec::new();
            for name in names(&list)? {
                let answer = conn
                    .call_json("services/schema", json!({ "name": name }))
                    .await
                    .map_err(|e| format!("services/schema {name}: {e}"))?;
                specs.push(spec(answer)?);
            }
            conn.close();
            client.wait_idle(Duration::from_secs(1)).await;
            Ok(specs)
        };
        tokio::time::timeout(DEADLINE, work)
            .await
            .map_err(|_| format!("no answer within {} s", DEADLINE.as_secs()))?
    })
}

fn http(base: &str, remote: &Remote) -> Result<Vec<OperationSpec>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DEADLINE))
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str, query: Option<(&str, &str)>| -> Result<Value, String> {
        let mut request = agent.get(format!("{base}{path}"));
        if let Some((key, value)) = query {
            request = request.query(key, value);
        }
        if let Some(token) = &remote.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {path}: HTTP {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON: {e}"))
    };
    let list = get("/search", None)?;
    names(&list)?
        .iter()
        .map(|name| spec(get("/schema", Some(("name", name)))?))
        .collect()
}
