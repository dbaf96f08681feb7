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

#[test]
fn typed_formats_parse_to_their_types() {
    use alknet_codegen_roundtrip::formats::types::Stamp;
    let stamp: Stamp = round_trip(json!({
        "at": "2026-12-02T10:00:00Z", "day": "2026-12-02",
        "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "v4": "192.0.2.1", "v6": "2001:db8::1", "note": "not checked here"
    }));
    assert_eq!(stamp.at.timestamp(), 1_796_205_600);
    assert_eq!(stamp.day.to_string(), "2026-12-02");
    assert_eq!(stamp.id.get_version_num(), 4);
    assert!(stamp.v4.is_documentation());
    let valid = json!({
        "at": "2026-12-02T10:00:00Z", "day": "2026-12-02",
        "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "v4": "192.0.2.1", "v6": "2001:db8::1", "note": "x"
    });
    for (field, bad) in [
        ("at", "yesterday"),
        ("day", "2026-13-01"),
        ("id", "not-a-uuid"),
        ("v4", "300.1.1.1"),
        ("v6", "192.0.2.1"),
    ] {
        let mut document = valid.clone();
        document[field] = json!(bad);
        refused::<Stamp>(document);
    }
}
