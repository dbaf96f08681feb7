//! A Rust program against the client progenitor generated from the demo node's OpenAPI 3.0.3
//! document. Usage: alknet-progenitor-client BASE_URL. Prints "progenitor client ok".

include!(concat!(env!("OUT_DIR"), "/client.rs"));

use futures::TryStreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base = std::env::args()
        .nth(1)
        .expect("usage: alknet-progenitor-client BASE_URL");
    let client = Client::new(&base);

    let added = client
        .demo_add(&types::AddInput { a: 2.0, b: 40.0 })
        .await
        .expect("demo/add");
    assert_eq!(added.into_inner().sum, 42.0);

    // A declared error arrives as the typed CallError.
    match client
        .demo_fail(&types::FailInput {
            reason: Some("progenitor".into()),
        })
        .await
    {
        Err(Error::ErrorResponse(error)) => {
            assert_eq!(error.status().as_u16(), 409);
            assert_eq!(error.into_inner().code, "DEMO_FAILED");
        }
        other => panic!("demo/fail: {other:?}"),
    }

    // A subscription is the raw event stream.
    let stream = client
        .demo_ticks(&types::TicksInput {
            count: 2,
            interval_ms: 1,
        })
        .await
        .expect("demo/ticks");
    let bytes: Vec<u8> = stream
        .into_inner() // the ResponseValue's ByteStream
        .into_inner() // its Stream of chunks
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .expect("the stream reads to its end");
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.starts_with("id: 1\ndata: {\"n\":1}\n\nid: 2\ndata: {\"n\":2}\n\nevent: completed"),
        "{text}"
    );
    println!("progenitor client ok");
}
