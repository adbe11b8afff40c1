//! `dedup@1.0`: HyperBEAM's `dev_dedup` tests, ported.

mod common;

use ao_core::{Error, Flow, Message, Value, msg};
use common::{msg, resolve, resolver, stack_of};

fn append(bin: &str) -> Message {
    msg! { "path" => "append", "bin" => bin }
}

#[test]
fn dedup() {
    let (r, _) = resolver();
    let base = msg! {
        "device" => "stack@1.0",
        "device-stack" => stack_of(&["dedup@1.0", "append-d2@1.0", "append-d3@1.0"]),
        "result" => "INIT",
    };
    let m2 = msg(resolve(&r, &base, append("_")));
    let m3 = msg(resolve(&r, &m2, append("_")));
    let m4 = msg(resolve(&r, &m3, append("/")));
    let m5 = msg(resolve(&r, &m4, append("/")));
    assert_eq!(m5.get_str("result"), Some("INIT+D2_+D3_+D2/+D3/"));
    // The seen IDs live in the state, newest first.
    let seen = match m5.get("dedup") {
        Some(Value::List(l)) => l.clone(),
        other => panic!("dedup list missing: {other:?}"),
    };
    let id_of =
        |m: &Message| Value::from(ao_core::id::id_string(m, ao_core::IdScope::All).unwrap());
    assert_eq!(seen, vec![id_of(&append("/")), id_of(&append("_"))]);
}

#[test]
fn dedup_with_multipass() {
    let (r, _) = resolver();
    let base = msg! {
        "device" => "stack@1.0",
        "device-stack" => stack_of(&[
            "dedup@1.0",
            "append-d2@1.0",
            "append-d3@1.0",
            "multipass@1.0",
        ]),
        "result" => "INIT",
        "passes" => 2i64,
    };
    let m2 = msg(resolve(&r, &base, append("_")));
    let m3 = msg(resolve(&r, &m2, append("_")));
    let m4 = msg(resolve(&r, &m3, append("/")));
    let m5 = msg(resolve(&r, &m4, append("/")));
    assert_eq!(
        m5.get_str("result"),
        Some("INIT+D2_+D3_+D2_+D3_+D2/+D3/+D2/+D3/")
    );
}

#[test]
fn dedup_alone_skips_what_it_has_seen() {
    let (r, _) = resolver();
    let base = msg! { "device" => "dedup@1.0" };
    let first = msg(resolve(&r, &base, append("x")));
    match resolve(&r, &first, append("x")) {
        Err(Error::Flow {
            flow: Flow::Skip,
            state,
        }) => assert_eq!(state, first),
        other => panic!("expected skip, got {other:?}"),
    }
    // Past the first pass it lets everything through unchanged.
    let later = first.with("pass", 2i64);
    assert_eq!(msg(resolve(&r, &later, append("x"))), later);
}

#[test]
fn malformed_dedup_state() {
    let (r, _) = resolver();
    let base = msg! { "device" => "dedup@1.0", "dedup" => 3i64 };
    assert!(matches!(
        resolve(&r, &base, append("x")),
        Err(Error::BadRequest(_))
    ));
}
