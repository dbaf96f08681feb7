//! What a `build.rs` pays: load a 50-operation service file and generate its Rust (typify +
//! prettyplease), timed. `cargo bench -p alknet-codegen --bench build_cost`. Target: under 2 s.
//!
//! The service is synthetic but shaped like real ones: every operation has an input and output
//! object, half of them a declared error with details, some subscriptions, and shared types.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

fn service(operations: usize) -> Value {
    let mut ops = Map::new();
    for i in 0..operations {
        let kind = match i % 5 {
            0 => "subscription",
            1 | 2 => "query",
            _ => "mutation",
        };
        let mut op = json!({
            "kind": kind,
            "description": format!("Operation number {i}."),
            "input": {
                "type": "object",
                "required": ["id", "filter"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "filter": {"$ref": "#/$defs/Filter"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "additionalProperties": false
            },
            "output": {
                "type": "object",
                "required": ["id", "records"],
                "properties": {
                    "id": {"type": "string"},
                    "records": {"type": "array", "items": {"$ref": "#/$defs/Record"}},
                    "next": {"type": ["string", "null"]}
                }
            }
        });
        if i % 2 == 0 {
            op["errors"] = json!({
                "NOT_THERE": {"description": "Missing.", "http_status": 404, "details": {"$ref": "#/$defs/Missing"}},
                "BUSY": {"description": "Try later.", "http_status": 409}
            });
        }
        ops.insert(format!("group{}/op{i}", i % 7), op);
    }
    json!({
        "service": "big",
        "operations": ops,
        "$defs": {
            "Filter": {"type": "object", "properties": {"since": {"type": "integer"}, "kinds": {"type": "array", "items": {"enum": ["a", "b", "c"]}}}},
            "Record": {"type": "object", "required": ["key", "value"], "properties": {"key": {"type": "string"}, "value": {"type": "number"}, "meta": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "Missing": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
        }
    })
}

fn main() {
    let dir = std::env::temp_dir().join(format!("alknet-build-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.json");
    std::fs::write(&file, serde_json::to_string_pretty(&service(50)).unwrap()).unwrap();

    let mut times = Vec::new();
    let mut lines = 0;
    for _ in 0..5 {
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let started = Instant::now();
        let written = alknet_codegen::Builder::new()
            .service(&file)
            .out_dir(&out)
            .generate()
            .expect("generates");
        times.push(started.elapsed());
        lines = std::fs::read_to_string(&written[0])
            .unwrap()
            .lines()
            .count();
        std::fs::remove_dir_all(&out).unwrap();
    }
    times.sort();
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "build.rs generation, 50-operation service file: best {:.0} ms, median {:.0} ms ({lines} lines of Rust); target < 2000 ms: {}",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        if median < Duration::from_secs(2) {
            "ok"
        } else {
            "MISSED"
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
