//! Documents through the generated types: a valid one parses to the right variant and width
//! and serializes back unchanged; an invalid one is refused, never accepted as something else.

use alknet::serde_json::{self, Value, json};
use alknet_codegen_roundtrip::types::{Event, Widths};

fn round_trip<T>(document: Value) -> T
where
    T: alknet::serde::de::DeserializeOwned + alknet::serde::Serialize,
{
    let parsed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{document} should parse: {e}"));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), document);
    parsed
}

fn refused<T: alknet::serde::de::DeserializeOwned>(document: Value) {
    assert!(
        serde_json::from_value::<T>(document.clone()).is_err(),
        "{document} should be refused"
    );
}

#[test]
fn a_const_tag_picks_the_variant() {
    let created: Event = round_trip(json!({"kind": "created", "id": "d1", "title": "Hello"}));
    assert!(matches!(created, Event::Created(ref c) if c.title == "Hello"));
    // A deletion that carries no title, and one that does carry every Created field name but
    // the `deleted` tag: each is a Deleted, never a Created with fields dropped.
    let deleted: Event = round_trip(json!({"kind": "deleted", "id": "d1"}));
    assert!(matches!(deleted, Event::Deleted(ref d) if d.reason.is_none()));
    let with_reason: Event = round_trip(json!({"kind": "deleted", "id": "d1", "reason": "spam"}));
    assert!(matches!(with_reason, Event::Deleted(ref d) if d.reason.as_deref() == Some("spam")));

    refused::<Event>(json!({"kind": "renamed", "id": "d1", "title": "x"}));
    refused::<Event>(json!({"kind": "deleted", "id": "d1", "title": "x"}));
    refused::<Event>(json!({"kind": "created", "id": "d1"}));
    refused::<Event>(json!({"id": "d1", "title": "x"}));
}

#[test]
fn integer_formats_give_exact_widths() {
    let widths: Widths = round_trip(json!({
        "byte": 255, "count": 4_294_967_295u64, "offset": -2_147_483_648i64,
        "big": u64::MAX, "ratio": 0.1
    }));
    assert_eq!(widths.big, u64::MAX);
    assert_eq!(widths.byte, u8::MAX);
    assert_eq!(widths.offset, i32::MIN);

    let valid = json!({"byte": 1, "count": 1, "offset": 1, "big": 1, "ratio": 1.5});
    for (field, bad) in [
        ("byte", json!(256)),
        ("byte", json!(-1)),
        ("count", json!(4_294_967_296u64)),
        ("offset", json!(2_147_483_648u64)),
        ("big", json!(-1)),
        ("big", json!(1.5)),
    ] {
        let mut document = valid.clone();
        document[field] = bad;
        refused::<Widths>(document);
    }
}
