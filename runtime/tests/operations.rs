//! `#[operation]` and `#[derive(DomainError)]`: the specs they produce (golden JSON) and typed
//! round trips over real QUIC.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alknet::demo::{
    AddInput, AddOp, DemoError, FailDetails, FailInput, FailOp, Tick, TicksInput, TicksOp,
};
use alknet::spec::{OpType, Visibility};
use alknet::{
    CallError, Client, ClientOptions, ConfigIdentities, Connection, Context, DomainError, Empty,
    Identity, OpError, Operation, Registry, Server, ServerOptions, ServerVerification, State,
    operation,
};
use futures_util::{Stream, StreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The bundle `alknet spec --demo` prints, checked against a file. `UPDATE_GOLDEN=1` rewrites it.
#[test]
fn demo_specs_match_the_golden_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/demo-spec-bundle.json"
    );
    let actual = alknet::demo::registry().spec_bundle().to_json_pretty();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        actual, expected,
        "demo specs changed: review, then UPDATE_GOLDEN=1"
    );
}

// ---------------------------------------------------------------- operations under test

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Deposit {
    account: String,
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Balance {
    account: String,
    balance: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Limit {
    max: u64,
}

#[derive(Debug, Clone, PartialEq, DomainError)]
enum BankError {
    /// The deposit is over the limit.
    #[domain(code = "OVER_LIMIT", status = 422)]
    OverLimit(Limit),
    /// This account is frozen.
    #[domain(code = "FROZEN", status = 423, message = "the account is frozen")]
    Frozen,
}

struct Ledger {
    total: AtomicU64,
    limit: u64,
}

/// Deposits money.
///
/// Takes state and the context besides its input.
#[operation(mutation, name = "bank/deposit", errors = BankError, scopes = ["bank"])]
async fn deposit(
    ledger: State<Ledger>,
    input: Deposit,
    ctx: Context,
) -> Result<Balance, BankError> {
    assert!(ctx.identity().is_some());
    if input.account == "frozen" {
        return Err(BankError::Frozen);
    }
    if input.amount > ledger.limit {
        return Err(BankError::OverLimit(Limit { max: ledger.limit }));
    }
    let balance = ledger.total.fetch_add(input.amount, Ordering::SeqCst) + input.amount;
    Ok(Balance {
        account: input.account,
        balance,
    })
}

/// Streams a countdown; fails at zero when asked to.
#[operation(subscription, name = "bank/countdown", errors = BankError)]
async fn countdown(input: Limit) -> impl Stream<Item = Result<Limit, BankError>> {
    stream::iter((0..=input.max).rev()).map(|n| {
        if n == 0 {
            Err(BankError::Frozen)
        } else {
            Ok(Limit { max: n })
        }
    })
}

/// Takes no input at all, has the default name.
#[operation(query)]
async fn no_input() -> Result<String, CallError> {
    Ok("fine".into())
}

/// Deprecated, internal, resource-checked.
#[operation(
    query,
    name = "bank/audit",
    internal,
    deprecated,
    scopes_any = ["auditor", "admin"],
    resource(type = "account", action = "audit", id = "/account")
)]
async fn audit(input: Deposit) -> Result<Empty, CallError> {
    let _ = input;
    Ok(Empty {})
}

fn registry() -> Registry {
    let mut registry = alknet::demo::registry();
    registry.provide(Ledger {
        total: AtomicU64::new(0),
        limit: 100,
    });
    registry.register::<DepositOp>().unwrap();
    registry.register::<CountdownOp>().unwrap();
    registry.register::<NoInputOp>().unwrap();
    registry.register::<AuditOp>().unwrap();
    registry
}

async fn connect() -> (Server, Client, Connection) {
    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    options.identities = Some(Arc::new(
        ConfigIdentities::default().with_token("alk_bank", Identity::new("teller", ["bank"])),
    ));
    let server = Server::bind(registry(), options).unwrap();
    let mut options = ClientOptions::new(ServerVerification::pin(server.fingerprint()));
    options.auth_token = Some("alk_bank".into());
    let client = Client::new(options).unwrap();
    let conn = client
        .connect(server.local_addr(), "localhost")
        .await
        .unwrap();
    (server, client, conn)
}

// ---------------------------------------------------------------- tests

#[test]
fn the_macro_builds_the_spec_from_the_function() {
    let spec = DepositOp::spec();
    assert_eq!(spec.name, "bank/deposit");
    assert_eq!(DepositOp::NAME, "bank/deposit");
    assert_eq!(spec.op_type, OpType::Mutation);
    assert_eq!(
        spec.description,
        "Deposits money.\n\nTakes state and the context besides its input."
    );
    assert_eq!(spec.input_schema["required"], json!(["account", "amount"]));
    assert_eq!(
        spec.output_schema["properties"]["balance"]["type"],
        "integer"
    );
    assert_eq!(spec.access_control.required_scopes, ["bank"]);
    let codes: Vec<_> = spec
        .error_schemas
        .iter()
        .map(|e| (e.code.as_str(), e.http_status))
        .collect();
    assert_eq!(codes, [("OVER_LIMIT", Some(422)), ("FROZEN", Some(423))]);
    assert_eq!(
        spec.error_schemas[0].description,
        "The deposit is over the limit."
    );
    assert_eq!(
        spec.error_schemas[0].schema.as_ref().unwrap()["required"],
        json!(["max"])
    );
    assert!(spec.error_schemas[1].schema.is_none());

    let audit = AuditOp::spec();
    assert_eq!(audit.visibility, Visibility::Internal);
    assert!(audit.deprecated);
    assert_eq!(
        audit.access_control.required_scopes_any,
        Some(vec!["auditor".to_owned(), "admin".to_owned()])
    );
    assert_eq!(
        audit.access_control.resource_type.as_deref(),
        Some("account")
    );
    assert_eq!(audit.resource_id_path.as_deref(), Some("/account"));
    audit.validate().unwrap();

    // The default name: `<crate name>/<function name>` (this test crate is `operations`).
    assert_eq!(NoInputOp::NAME, "operations/no_input");
    assert_eq!(NoInputOp::spec().input_schema["type"], "object");
    assert_eq!(CountdownOp::KIND, OpType::Subscription);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_and_typed_errors_round_trip() {
    let (_server, _client, conn) = connect().await;
    let deposit = |amount| Deposit {
        account: "alice".into(),
        amount,
    };
    let balance = conn.call::<DepositOp>(&deposit(40)).await.unwrap();
    assert_eq!(
        balance,
        Balance {
            account: "alice".into(),
            balance: 40
        }
    );
    let balance = conn.call::<DepositOp>(&deposit(2)).await.unwrap();
    assert_eq!(balance.balance, 42);

    // Declared errors come back as the same enum, details included.
    let error = conn.call::<DepositOp>(&deposit(1_000)).await.unwrap_err();
    assert_eq!(
        error,
        OpError::Domain(BankError::OverLimit(Limit { max: 100 }))
    );
    let frozen = Deposit {
        account: "frozen".into(),
        amount: 1,
    };
    let error = conn.call::<DepositOp>(&frozen).await.unwrap_err();
    assert_eq!(error, OpError::Domain(BankError::Frozen));
    // ... and on the wire they are the declared code, message and details.
    let wire = conn
        .call_json("bank/deposit", json!({"account": "a", "amount": 500}))
        .await
        .unwrap_err();
    assert_eq!(wire.code, "OVER_LIMIT");
    assert_eq!(wire.details, Some(json!({"max": 100})));
    let wire = conn
        .call_json("bank/deposit", json!({"account": "frozen", "amount": 1}))
        .await
        .unwrap_err();
    assert_eq!(wire.message, "the account is frozen");

    // Anything else stays a CallError.
    let error = conn.call::<AuditOp>(&deposit(1)).await.unwrap_err();
    assert!(
        matches!(error, OpError::Call(ref e) if e.code == "NOT_FOUND"),
        "{error:?}"
    );

    assert_eq!(conn.call::<NoInputOp>(&Empty {}).await.unwrap(), "fine");
    assert_eq!(
        conn.call::<AddOp>(&AddInput {
            a: 1.into(),
            b: 2.into()
        })
        .await
        .unwrap()
        .sum,
        3.into()
    );
    let demo = conn
        .call::<FailOp>(&FailInput {
            reason: Some("why".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        demo,
        OpError::Domain(DemoError::Failed(FailDetails {
            reason: "why".into()
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_subscriptions_round_trip() {
    let (_server, _client, conn) = connect().await;
    let ticks: Vec<Tick> = conn
        .subscribe::<TicksOp>(&TicksInput {
            count: 4,
            interval_ms: 0,
        })
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ticks, (1..=4).map(|n| Tick { n }).collect::<Vec<_>>());

    let items: Vec<_> = conn
        .subscribe::<CountdownOp>(&Limit { max: 2 })
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], Ok(Limit { max: 2 }));
    assert_eq!(
        items[2],
        Err(OpError::Domain(BankError::Frozen)),
        "a typed error ends the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_state_is_a_clear_internal_error() {
    let mut registry = Registry::new();
    registry.register::<DepositOp>().unwrap();
    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    options.identities = Some(Arc::new(
        ConfigIdentities::default().with_token("alk_bank", Identity::new("teller", ["bank"])),
    ));
    let server = Server::bind(registry, options).unwrap();
    let mut options = ClientOptions::new(ServerVerification::pin(server.fingerprint()));
    options.auth_token = Some("alk_bank".into());
    let client = Client::new(options).unwrap();
    let conn = client
        .connect(server.local_addr(), "localhost")
        .await
        .unwrap();
    let error = conn
        .call::<DepositOp>(&Deposit {
            account: "a".into(),
            amount: 1,
        })
        .await
        .unwrap_err();
    let OpError::Call(error) = error else {
        panic!("{error:?}")
    };
    assert_eq!(error.code, "INTERNAL");
    assert!(error.message.contains("Ledger"), "{}", error.message);
}
