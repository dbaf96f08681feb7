//! A first alknet program, end to end in one process:
//!
//! 1. declare three operations with `#[operation]` — a query with a typed domain error, a
//!    subscription, and a query that calls back into its caller — and one on the client side,
//! 2. serve them over QUIC on a random loopback port with a self-signed certificate,
//! 3. connect a client that pins the server's fingerprint and offers its own operation,
//! 4. call them with typed calls and print the results.
//!
//! Run it with `cargo run -p alknet-example-quickstart`.

use std::time::Duration;

use alknet::{
    CallError, Client, ClientOptions, Context, DomainError, Empty, OpError, Registry, Server,
    ServerOptions, ServerVerification, operation,
};
use futures_util::{Stream, StreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whom to greet.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Greeting {
    /// A name; not empty.
    #[schemars(length(min = 1))]
    name: String,
}

/// The errors `hello/greet` declares. Callers get this enum back, not a string.
#[derive(Debug, PartialEq, DomainError)]
enum GreetError {
    /// Refuses to greet `stranger`.
    #[domain(code = "NO_STRANGERS", status = 403)]
    NoStrangers,
}

/// Greets someone by name.
#[operation(query, name = "hello/greet", errors = GreetError)]
async fn greet(input: Greeting) -> Result<String, GreetError> {
    if input.name == "stranger" {
        return Err(GreetError::NoStrangers);
    }
    Ok(format!("Hello, {}!", input.name))
}

/// Where a countdown starts, and each step of it.
#[derive(Serialize, Deserialize, JsonSchema, Debug)]
struct Countdown {
    /// Steps left.
    #[schemars(range(max = 100))]
    left: u32,
}

/// Counts down from `left` to 1, one item every 100 ms.
#[operation(subscription, name = "hello/countdown")]
async fn countdown(input: Countdown) -> impl Stream<Item = Result<Countdown, CallError>> {
    stream::iter((1..=input.left).rev()).then(|left| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(Countdown { left })
    })
}

/// Asks the caller for its name: the protocol is symmetric, so a handler can call back into
/// the side that called it.
#[operation(query, name = "hello/who_are_you", calls = ["client/name"])]
async fn who_are_you(ctx: Context) -> Result<String, CallError> {
    let name = ctx.env().call_peer::<ClientNameOp>(&Empty {}).await?;
    Ok(format!("You told me you are {name}"))
}

/// The client's name (served by the client, called by the server).
#[operation(query, name = "client/name")]
async fn client_name() -> Result<String, CallError> {
    Ok("the quickstart client".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut registry = Registry::new();
    registry.register::<GreetOp>()?;
    registry.register::<CountdownOp>()?;
    registry.register::<WhoAreYouOp>()?;
    let server = Server::bind(registry, ServerOptions::new("127.0.0.1:0".parse()?))?;
    println!(
        "serving on {} with certificate {}",
        server.local_addr(),
        server.fingerprint()
    );

    let mut client_ops = Registry::new();
    client_ops.register::<ClientNameOp>()?;
    let options = ClientOptions::new(ServerVerification::pin(server.fingerprint()));
    let client = Client::with_registry(client_ops, options)?;
    let conn = client.connect(server.local_addr(), "localhost").await?;

    let ada = conn
        .call::<GreetOp>(&Greeting { name: "Ada".into() })
        .await?;
    println!("hello/greet(Ada) -> {ada}");

    match conn
        .call::<GreetOp>(&Greeting {
            name: "stranger".into(),
        })
        .await
    {
        Err(OpError::Domain(GreetError::NoStrangers)) => {
            println!("hello/greet(stranger) -> refused with GreetError::NoStrangers")
        }
        other => anyhow::bail!("expected NoStrangers, got {other:?}"),
    }

    match conn.call::<GreetOp>(&Greeting { name: "".into() }).await {
        Err(OpError::Call(error)) => println!(
            "hello/greet(\"\") -> {error} (details {})",
            error.details.clone().unwrap_or_default()
        ),
        other => anyhow::bail!("an empty name should be invalid, got {other:?}"),
    }

    let mut steps = conn
        .subscribe::<CountdownOp>(&Countdown { left: 3 })
        .await?;
    while let Some(step) = steps.next().await {
        println!("hello/countdown -> {}", step?.left);
    }

    println!(
        "hello/who_are_you -> {}",
        conn.call::<WhoAreYouOp>(&Empty {}).await?
    );

    conn.close();
    client.wait_idle(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
