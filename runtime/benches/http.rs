//! The HTTP gateway against bare axum, in one run on loopback:
//! `cargo bench -p alknet --bench http`.
//!
//! alknet: `POST /call {"operation": "demo/echo", "input": …}` through the gateway (JSON parse,
//! identity, lookup, validation, dispatch, status mapping). Floor: a bare axum handler on the
//! same route that parses the same body and answers its `input`. The same load generator (64
//! concurrent keep-alive clients) drives both; best of three. Target: alknet ≥ 0.7× the floor.
//! `BENCH_SCALE` scales the request count.

use std::time::{Duration, Instant};

use alknet::{Server, ServerOptions};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::future::join_all;
use serde_json::{Value, json};

const CLIENTS: usize = 64;

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(CLIENTS)
}

async fn bare_axum() -> String {
    let app = Router::new().route(
        "/call",
        post(|Json(body): Json<Value>| async move { Json(body["input"].clone()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/call")
}

async fn load(url: &str, requests: usize) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let body = json!({"operation": "demo/echo", "input": {"msg": "hello", "n": 1}}).to_string();
    let per_client = requests / CLIENTS;
    let started = Instant::now();
    join_all((0..CLIENTS).map(|_| {
        let client = client.clone();
        let body = body.clone();
        let url = url.to_owned();
        tokio::spawn(async move {
            for _ in 0..per_client {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await.unwrap();
            }
        })
    }))
    .await;
    started.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let requests = scaled(40_000) / CLIENTS * CLIENTS;
        let floor_url = bare_axum().await;
        let server = Server::bind(alknet::demo::registry(), ServerOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = server.serve_http("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let alknet_url = format!("http://{addr}/call");
        load(&floor_url, requests / 10).await;
        load(&alknet_url, requests / 10).await;
        let (mut floor, mut alknet) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            floor.push(load(&floor_url, requests).await);
            alknet.push(load(&alknet_url, requests).await);
        }
        let rate = |times: &[Duration]| requests as f64 / times.iter().min().unwrap().as_secs_f64();
        let (floor, alknet) = (rate(&floor), rate(&alknet));
        println!("HTTP POST /call demo/echo, {requests} requests by {CLIENTS} keep-alive clients, best of 3");
        println!("  bare axum echo:  {floor:>10.0} requests/s");
        println!("  alknet gateway:  {alknet:>10.0} requests/s");
        println!(
            "  ratio {:.2}x (target >= 0.70: {})",
            alknet / floor,
            if alknet / floor >= 0.7 { "ok" } else { "MISSED" }
        );
        server.shutdown(Duration::from_secs(1)).await;
    });
}
