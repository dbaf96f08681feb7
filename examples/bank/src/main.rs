//! Schema-first, end to end: `schemas/bank.json` becomes Rust at build time (see `build.rs`):
//! the types, the `BankService` trait with one method per operation, `register`, the typed
//! `BankClient`, and an error enum per operation with declared errors. This program implements
//! the trait with an in-memory ledger, serves it over QUIC, and calls it through the client.
//!
//! Run it with `cargo run -p alknet-example-bank`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alknet::{
    Client, ClientOptions, ConfigIdentities, Context, Identity, OpError, Registry, Server,
    ServerOptions, ServerVerification, typed::ItemStream,
};
use futures_util::StreamExt;
use tokio::sync::broadcast;

/// The generated code for `schemas/bank.json`.
mod bank {
    include!(concat!(env!("OUT_DIR"), "/bank.rs"));
}

/// The demo node's bundle, generated too: a client for `alknet serve --demo` (unused here,
/// compiled to prove every generated file builds).
#[allow(dead_code)]
mod demo {
    include!(concat!(env!("OUT_DIR"), "/demo.rs"));
}

use bank::types::{
    Account, AccountRef, AccountStatus, AuditRebuildOutput, Cents, Deposit, Limit, Movement,
};
use bank::{AccountGetError, BankClient, BankService, DepositError};

const DEPOSIT_LIMIT: u64 = 100_000;

/// Accounts in memory, and a channel of movements for subscribers.
struct Ledger {
    accounts: Mutex<HashMap<String, (u64, bool)>>,
    movements: broadcast::Sender<(String, Movement)>,
}

impl BankService for Ledger {
    async fn account_get(
        &self,
        _ctx: Context,
        input: AccountRef,
    ) -> Result<Account, OpError<AccountGetError>> {
        let accounts = self.accounts.lock().unwrap();
        let (balance, frozen) = accounts
            .get(input.account.as_str())
            .copied()
            .ok_or_else(|| AccountGetError::NoSuchAccount(input.clone()))?;
        Ok(Account {
            account: input.account.to_string(),
            balance: Cents(balance),
            status: if frozen {
                AccountStatus::Frozen
            } else {
                AccountStatus::Open
            },
        })
    }

    async fn deposit(
        &self,
        _ctx: Context,
        input: Deposit,
    ) -> Result<Account, OpError<DepositError>> {
        let name = input.account.to_string();
        if input.amount.0 > DEPOSIT_LIMIT {
            return Err(DepositError::OverLimit(Limit {
                max: Cents(DEPOSIT_LIMIT),
            })
            .into());
        }
        let balance = {
            let mut accounts = self.accounts.lock().unwrap();
            let Some((balance, frozen)) = accounts.get_mut(&name) else {
                let account = AccountRef {
                    account: input.account.to_string().try_into().unwrap(),
                };
                return Err(DepositError::NoSuchAccount(account).into());
            };
            if *frozen {
                return Err(DepositError::Frozen.into());
            }
            *balance += input.amount.0;
            *balance
        };
        let movement = Movement {
            amount: input.amount.0 as i64,
            balance: Cents(balance),
        };
        let _ = self.movements.send((name.clone(), movement));
        Ok(Account {
            account: name,
            balance: Cents(balance),
            status: AccountStatus::Open,
        })
    }

    async fn movements(
        &self,
        _ctx: Context,
        input: AccountRef,
    ) -> Result<ItemStream<Movement, alknet::NoDomainError>, OpError<alknet::NoDomainError>> {
        let account = input.account.to_string();
        let feed = tokio_stream_of(self.movements.subscribe());
        Ok(feed
            .filter(move |(name, _)| std::future::ready(*name == account))
            .map(|(_, movement)| Ok(movement))
            .boxed())
    }

    async fn audit_rebuild(
        &self,
        _ctx: Context,
        _input: alknet::serde_json::Value,
    ) -> Result<AuditRebuildOutput, OpError<alknet::NoDomainError>> {
        Ok(AuditRebuildOutput {
            accounts: self.accounts.lock().unwrap().len() as u64,
        })
    }

    async fn ping(
        &self,
        _ctx: Context,
        _input: alknet::serde_json::Value,
    ) -> Result<bank::types::PingOutput, OpError<alknet::NoDomainError>> {
        // `"const": "pong"` is a one-value enum in Rust: nothing else can be answered.
        Ok(bank::types::PingOutput::Pong)
    }
}

/// A broadcast receiver as a stream (lagging subscribers skip what they missed).
fn tokio_stream_of<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((item, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ledger = Arc::new(Ledger {
        accounts: Mutex::new(HashMap::from([
            ("alice".to_owned(), (1_000, false)),
            ("bob".to_owned(), (0, true)),
        ])),
        movements: broadcast::channel(64).0,
    });
    let mut registry = Registry::new();
    bank::register(&mut registry, ledger)?;

    // `bank/deposit` needs the scope `teller` and the `deposit` action on the account (here a
    // static grant); `bank/account/get` one of `teller`/`auditor`.
    let mut teller = Identity::new("teller-1", ["teller"]);
    teller
        .resources
        .insert("account".into(), vec!["deposit".into()]);
    let mut options = ServerOptions::new("127.0.0.1:0".parse()?);
    options.identities = Some(Arc::new(
        ConfigIdentities::default().with_token("alk_example_teller", teller),
    ));
    let server = Server::bind(registry, options)?;
    println!(
        "bank service on {} ({})",
        server.local_addr(),
        server.fingerprint()
    );

    let mut options = ClientOptions::new(ServerVerification::pin(server.fingerprint()));
    options.auth_token = Some("alk_example_teller".into());
    let client = Client::new(options)?;
    let bank = BankClient::new(client.connect(server.local_addr(), "localhost").await?);

    let alice = AccountRef {
        account: "alice".try_into()?,
    };
    let mut feed = bank.movements(&alice).await?;
    // Give the subscription a moment to reach the server before the first deposit.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let account = bank.account_get(&alice).await?;
    println!(
        "account/get alice -> balance {} ({:?})",
        account.balance.0, account.status
    );

    let after = bank
        .deposit(&Deposit {
            account: "alice".try_into()?,
            amount: Cents(250),
            memo: Some("salary".try_into()?),
        })
        .await?;
    println!("deposit 250 -> balance {}", after.balance.0);
    let movement = feed.next().await.expect("a movement")?;
    println!(
        "movements -> {:+} (balance {})",
        movement.amount, movement.balance.0
    );

    match bank
        .deposit(&Deposit {
            account: "alice".try_into()?,
            amount: Cents(1_000_000),
            memo: None,
        })
        .await
    {
        Err(OpError::Domain(DepositError::OverLimit(limit))) => {
            println!("deposit 1000000 -> OVER_LIMIT (max {})", limit.max.0)
        }
        other => anyhow::bail!("expected OVER_LIMIT, got {other:?}"),
    }
    match bank
        .deposit(&Deposit {
            account: "bob".try_into()?,
            amount: Cents(1),
            memo: None,
        })
        .await
    {
        Err(OpError::Domain(DepositError::Frozen)) => println!("deposit to bob -> FROZEN"),
        other => anyhow::bail!("expected FROZEN, got {other:?}"),
    }
    match bank
        .account_get(&AccountRef {
            account: "carol".try_into()?,
        })
        .await
    {
        Err(OpError::Domain(AccountGetError::NoSuchAccount(missing))) => println!(
            "account/get carol -> NO_SUCH_ACCOUNT ({})",
            missing.account.as_str()
        ),
        other => anyhow::bail!("expected NO_SUCH_ACCOUNT, got {other:?}"),
    }
    println!(
        "ping -> {}",
        bank.ping(&alknet::serde_json::json!({})).await?
    );

    drop(feed);
    bank.connection().close();
    client.wait_idle(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
