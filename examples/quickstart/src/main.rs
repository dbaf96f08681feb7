//! A first alknet program, end to end in one process:
//!
//! 1. declare two operations (a query and a subscription) with their specs and handlers,
//! 2. serve them over QUIC on a random loopback port with a self-signed certificate,
//! 3. connect a client that pins the server's fingerprint, and offers an operation of its own,
//! 4. call, subscribe, handle a typed error, and let the server call the client back.
//!
//! Run it with `cargo run -p alknet-example-quickstart`.

use std::time::Duration;

use alknet::spec::{ErrorSpec, OpType, OperationSpec};
use alknet::{
    CallError, Client, ClientOptions, Handler, Registry, Server, ServerOptions, ServerVerification,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, Deserialize)]
struct Greeting {
    name: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Countdown {
    left: u32,
}

fn server_registry() -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    registry.register(
        OperationSpec::new("hello/greet", OpType::Query)?
            .with_description("Greets someone by name.")
            .with_input_schema(json!({
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}}
            }))
            .with_output_schema(json!({"type": "string"}))
            .with_error(
                ErrorSpec::new("NO_STRANGERS", "Refuses to greet `stranger`.")
                    .with_http_status(403),
            ),
        Handler::typed_unary(|_ctx, input: Greeting| async move {
            if input.name == "stranger" {
                return Err(CallError::domain("NO_STRANGERS", "I don't greet strangers"));
            }
            Ok(format!("Hello, {}!", input.name))
        }),
    )?;
    registry.register(
        OperationSpec::new("hello/countdown", OpType::Subscription)?
            .with_description("Counts down from `left` to 1, one item every 100 ms.")
            .with_input_schema(json!({
                "type": "object",
                "required": ["left"],
                "properties": {"left": {"type": "integer", "minimum": 0, "maximum": 100}}
            })),
        Handler::typed_subscription(|_ctx, input: Countdown| async move {
            Ok(
                futures_util::stream::iter((1..=input.left).rev()).then(|left| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(Countdown { left })
                }),
            )
        }),
    )?;
    // A handler that calls back into whoever called it: the protocol is symmetric.
    registry.register(
        OperationSpec::new("hello/who_are_you", OpType::Query)?
            .with_description("Asks the caller for its name."),
        Handler::unary(|ctx, _input| async move {
            let peer = ctx
                .peer()
                .ok_or_else(|| CallError::internal("not over QUIC"))?;
            let name = peer.call("client/name", json!({})).await?;
            Ok(json!(format!("You told me you are {name}")))
        }),
    )?;
    Ok(registry)
}

fn client_registry() -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    registry.register(
        OperationSpec::new("client/name", OpType::Query)?,
        Handler::unary(|_ctx, _input| async move { Ok(json!("the quickstart client")) }),
    )?;
    Ok(registry)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::bind(
        server_registry()?,
        ServerOptions::new("127.0.0.1:0".parse()?),
    )?;
    println!(
        "serving on {} with certificate {}",
        server.local_addr(),
        server.fingerprint()
    );

    let options = ClientOptions::new(ServerVerification::pin(server.fingerprint()));
    let client = Client::with_registry(client_registry()?, options)?;
    let conn = client.connect(server.local_addr(), "localhost").await?;

    let greeting: String = conn
        .call_typed("hello/greet", &Greeting { name: "Ada".into() })
        .await?;
    println!("hello/greet -> {greeting}");

    match conn.call("hello/greet", json!({"name": "stranger"})).await {
        Err(error) if error.code == "NO_STRANGERS" => println!("hello/greet -> refused: {error}"),
        other => anyhow::bail!("expected NO_STRANGERS, got {other:?}"),
    }

    match conn.call("hello/greet", json!({"name": ""})).await {
        Err(error) => println!(
            "hello/greet with an empty name -> {error} (details {:?})",
            error.details
        ),
        Ok(_) => anyhow::bail!("an empty name should be invalid"),
    }

    let mut countdown = conn
        .subscribe_typed::<_, Countdown>("hello/countdown", &json!({"left": 3}))
        .await?;
    while let Some(item) = countdown.next().await {
        println!("hello/countdown -> {}", item?.left);
    }

    println!(
        "hello/who_are_you -> {}",
        conn.call("hello/who_are_you", json!({})).await?
    );

    conn.close();
    client.wait_idle(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
