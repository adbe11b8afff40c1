//! Property tests: codec round-trips preserve a message and its unsigned ID; HyperPATH
//! `to` ⇄ `from` round-trips.

use ao_core::codec::{self, httpsig, structured};
use ao_core::id;
use ao_core::path::{self, Limits, Step};
use ao_core::{Atom, Message, Value};
use bytes::Bytes;
use proptest::prelude::*;

fn key() -> impl Strategy<Value = String> {
    // Lower-case keys that are not ID-shaped, private or regenerated, and none of the keys the
    // codecs interpret (`body`, `data`, `path`…), which have their own vectors.
    "[a-z][a-z0-9-]{0,11}".prop_filter("reserved", |k| {
        !k.starts_with("priv")
            && ![
                "body",
                "data",
                "ao-types",
                "ao-ids",
                "body-keys",
                "inline-body-key",
                "content-type",
                "content-digest",
                "commitments",
                "signature",
                "signature-input",
                "target",
                "last_tx",
                "quantity",
                "reward",
                "tags",
                "format",
                "manifest",
                "id",
                "owner",
                "denomination",
                "data_root",
                "data_size",
                "data_tree",
            ]
            .contains(&k.as_str())
    })
}

fn text() -> impl Strategy<Value = String> {
    // Printable ASCII without leading/trailing spaces (header values are trimmed in IDs).
    "[!-~]([ -~]{0,40}[!-~])?"
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::from),
        (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(Value::Integer),
        (-1.0e12f64..1.0e12).prop_map(Value::Float),
        "[a-z_]{1,10}".prop_map(|a| Value::Atom(Atom::new(&a))),
        Just(Value::from("")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar().prop_filter("no empty", |v| v != &Value::from("")), 1..4).prop_map(Value::List),
        1 => Just(Value::List(Vec::new())),
        1 => "[A-Za-z0-9 ]{4097,4200}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::btree_map(key(), inner.clone(), 0..5)
                .prop_map(|m| Value::Message(m.into_iter().collect())),
            prop::collection::vec(
                prop::collection::btree_map(key(), inner, 1..3)
                    .prop_map(|m| Value::Message(m.into_iter().collect())),
                1..3
            )
            .prop_map(Value::List),
        ]
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop::collection::btree_map(key(), value(), 0..6).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn structured_tabm_round_trip(msg in message()) {
        let tabm = structured::to_tabm(&msg).unwrap();
        prop_assert_eq!(structured::from_tabm(&tabm).unwrap(), msg);
    }

    #[test]
    fn httpsig_round_trip_keeps_the_id(msg in message()) {
        let http = codec::to_http(&msg).unwrap();
        let decoded = codec::from_http(&http).unwrap();
        let content = decoded.clone().without("body-keys").without("content-type").without("inline-body-key");
        prop_assert_eq!(&content, &msg);
        // The unsigned ID survives the round trip: `body-keys` is not covered, and
        // `content-type` / `inline-body-key` come back exactly as they were encoded.
        prop_assert_eq!(id::unsigned_id(&decoded.without("body-keys")).unwrap(), id::unsigned_id(&msg).unwrap());
        // Re-encoding the decoded TABM gives the same wire form.
        let again = httpsig::encode(&httpsig::decode(&http).unwrap()).unwrap();
        prop_assert_eq!(again.body, http.body);
    }

    #[test]
    fn flat_round_trip(msg in message()) {
        let text = codec::to_flat(&msg).unwrap();
        // Values with a newline cannot be represented in flat text; the strategy has none.
        prop_assert_eq!(&codec::from_flat(&text).unwrap(), &msg);
        prop_assert_eq!(id::unsigned_id(&codec::from_flat(&text).unwrap()).unwrap(), id::unsigned_id(&msg).unwrap());
    }

    #[test]
    fn json_round_trip(msg in message()) {
        let text = codec::to_json(&msg).unwrap();
        let back = codec::from_json(&text).unwrap();
        prop_assert_eq!(id::unsigned_id(&back).unwrap(), id::unsigned_id(&msg).unwrap());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn httpsig_decode_never_panics(headers in prop::collection::btree_map("[a-z-]{1,12}", "[ -~]{0,40}", 0..6), body in prop::collection::vec(any::<u8>(), 0..200)) {
        let http = httpsig::HttpMessage {
            headers: headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
            body: Some(Bytes::from(body)),
        };
        let _ = codec::from_http(&http);
    }

    #[test]
    fn hyperpath_to_from_round_trip(
        parts in prop::collection::vec("[a-z][a-z0-9_-]{0,8}", 1..5),
        keys in prop::collection::vec((0usize..5, "[a-z][a-z0-9]{0,6}", prop_oneof![text().prop_filter("no ascii specials", |t| !t.contains(['&', '/', '?', '(', ')', '"', '=', '+', '%', ' ', '~'])).prop_map(Value::from), (-999i64..999).prop_map(Value::Integer)]), 0..4),
    ) {
        let mut steps = vec![Step::message(Message::new())];
        for p in &parts {
            steps.push(Step::message(Message::new().with("path", p.as_str())));
        }
        for (i, k, v) in keys {
            let n = i % steps.len();
            if let Step::Message(r) = &mut steps[n]
                && k != "path"
            {
                r.message.insert(k.as_str(), v);
            }
        }
        let singleton = path::to_singleton(&steps).unwrap();
        prop_assert_eq!(path::from_singleton(&singleton, &Limits::default()).unwrap(), steps);
    }

    #[test]
    fn hyperpath_parse_never_panics(p in "[ -~]{0,80}") {
        let _ = path::parse(&p, &Limits::default());
    }
}

proptest! {
    /// A nested binary of any bytes, a raw signature with CR LF in it among them, comes back
    /// as it was: a value that cannot be a part header line travels as a part of its own.
    #[test]
    fn nested_binaries_of_any_bytes_round_trip(
        raw in proptest::collection::vec(any::<u8>(), 0..600),
        crlf_at in 0usize..600,
    ) {
        let mut raw = raw;
        if !raw.is_empty() {
            let at = crlf_at % raw.len();
            raw.insert(at, b'\r');
            raw.insert(at + 1, b'\n');
        }
        let nested = Message::new()
            .with("alg", "rsa-pss")
            .with("signature", Value::Binary(Bytes::from(raw)));
        let msg = Message::new()
            .with("a", "1")
            .with("nested", Value::Message(Message::new().with("inner", Value::Message(nested)).with("k", "v")));
        let http = codec::to_http(&msg).unwrap();
        let back = codec::from_http(&http).unwrap();
        prop_assert_eq!(back.without("body-keys").without("content-type"), msg);
    }
}

/// Decodes headers and a body the way the HTTP front door hands them over.
fn decode(headers: &[(&str, &[u8])], body: &[u8]) -> ao_core::Result<Message> {
    let mut http = httpsig::HttpMessage::default();
    for (k, v) in headers {
        http.headers
            .insert((*k).to_owned(), Bytes::copy_from_slice(v));
    }
    http.body = Some(Bytes::copy_from_slice(body));
    codec::from_http(&http)
}

/// Whether encoding `msg` as httpsig is refused as unencodable (a typed error, not a broken
/// header or body).
fn unencodable(msg: &Message) -> bool {
    matches!(codec::to_http(msg), Err(ao_core::Error::Unencodable(_)))
}

// Inputs the `httpsig_decode` fuzz target found, where decode → encode → decode broke.

#[test]
fn ao_types_keys_that_a_dictionary_cannot_hold_are_escaped() {
    for key in ["?", "a/b", "x&y+z", ".dot"] {
        let msg = Message::new().with(key, "").with("n", 1i64);
        let back = codec::from_http(&codec::to_http(&msg).unwrap()).unwrap();
        assert_eq!(back, msg, "key {key:?}");
    }
}

#[test]
fn part_names_with_quotes_and_backslashes_round_trip() {
    for key in ["\\", "a\"b", "ключ"] {
        let msg = Message::new().with(key, Message::new().with("y", "1"));
        let back = codec::from_http(&codec::to_http(&msg).unwrap()).unwrap();
        assert_eq!(
            back.without("body-keys").without("content-type"),
            msg,
            "key {key:?}"
        );
    }
}

#[test]
fn keys_with_control_characters_are_refused_on_decode() {
    let err = decode(&[("\0/\u{1b}", b"")], b"").unwrap_err();
    assert!(err.to_string().contains("control character"), "{err}");
}

#[test]
fn what_ao_ids_cannot_carry_is_an_encode_error_not_a_broken_header() {
    let id_key = "ao-typao-typ66666666666666666666666666666e]";
    assert_eq!(id_key.len(), 43);
    let msg = decode(&[(id_key, b"v")], b"").unwrap();
    assert!(unencodable(&msg));
    let msg = Message::new().with("vcaPe4JWnrSOCktDHBgXge-zWUb6JRkqbom5w9t7i-4", "tab\there");
    assert!(unencodable(&msg));
    // A 32-byte key starting with `.`: `.` may follow a key's first byte, not start it.
    let id_key = ".5zzzzzzzyzzxzzzzzzzzzzzzz0zzzzz";
    assert_eq!(id_key.len(), 32);
    let msg = decode(&[(id_key, b"$")], b"").unwrap();
    assert!(unencodable(&msg));
    // One that may start a key still travels in ao-ids and comes back.
    let msg = Message::new().with("_5zzzzzzzyzzxzzzzzzzzzzzzz0zzzzz", "$");
    let http = codec::to_http(&msg).unwrap();
    assert!(http.headers.contains_key("ao-ids"));
    assert_eq!(codec::from_http(&http).unwrap(), msg);
}

/// Found by the `httpsig_decode` fuzz target: a header `/inline-body-key/j` decodes to a group
/// under `inline-body-key`; beside `data`, encoding added the header `inline-body-key: data` and
/// sent the group as parts under the same name, which then did not decode.
#[test]
fn an_inline_body_key_that_is_a_group_is_an_encode_error() {
    let msg = decode(&[("/inline-body-key/j", b""), ("data", b"&")], b"").unwrap();
    assert!(matches!(
        msg.get("inline-body-key"),
        Some(Value::Message(_))
    ));
    let err = codec::to_http(&msg).unwrap_err();
    assert!(matches!(err, ao_core::Error::Unencodable(_)), "{err}");
    assert!(err.to_string().contains("inline-body-key"), "{err}");
    let msg = Message::new()
        .with("inline-body-key", Message::new().with("j", "x"))
        .with("body", "b");
    assert!(unencodable(&msg));
    // A binary one still names the inline key.
    let msg = Message::new()
        .with("inline-body-key", "script")
        .with("script", "return 1+1");
    let http = codec::to_http(&msg).unwrap();
    assert_eq!(http.body.as_deref(), Some(&b"return 1+1"[..]));
    assert_eq!(codec::from_http(&http).unwrap(), msg);
}

#[test]
fn a_nested_content_type_cannot_become_a_part() {
    let msg = Message::new().with("content-type", Message::new().with("y", "1"));
    assert!(unencodable(&msg));
}

/// Private keys (spec §1.3) never come in from the wire: every decoder drops them, so a
/// request cannot set a message's private area (for instance through a resolver merge) nor
/// carry a private name in the public one.
#[test]
fn private_keys_are_dropped_on_decoding() {
    let mut http = httpsig::HttpMessage::default();
    for (k, v) in [
        ("priv-verified-signers", "forged"),
        ("priv", "x"),
        ("private-key", "x"),
        ("x", "1"),
    ] {
        http.headers
            .insert(k.into(), Bytes::copy_from_slice(v.as_bytes()));
    }
    http.headers.insert(
        "ao-types".into(),
        Bytes::from_static(b"priv-list=\"empty-list\""),
    );
    let m = codec::from_http(&http).unwrap();
    assert_eq!(m.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x"]);
    assert!(m.private_fields().is_empty(), "{:?}", m.private_fields());

    let m = codec::from_json(br#"{"a":"b","priv-x":"y","nested":{"priv":"z","c":"d"}}"#).unwrap();
    assert_eq!(
        m.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["a", "nested"]
    );
    let nested = m.get_message("nested").unwrap();
    assert_eq!(nested.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["c"]);
    assert!(m.private_fields().is_empty() && nested.private_fields().is_empty());
}

/// Multipart bodies: a boundary longer than RFC 2046's 70 bytes is refused (the search for it
/// was O(body × boundary)), and a body of many parts decodes whole.
#[test]
fn multipart_boundaries_are_bounded_and_many_parts_decode() {
    let multipart = |boundary: &str, body: Vec<u8>| {
        let mut http = httpsig::HttpMessage::default();
        http.headers.insert(
            "content-type".into(),
            Bytes::from(format!("multipart/form-data; boundary=\"{boundary}\"")),
        );
        http.body = Some(Bytes::from(body));
        codec::from_http(&http)
    };
    let long = "-".repeat(71);
    let mut body =
        format!("--{long}\r\ncontent-disposition: form-data;name=\"a\"\r\n\r\nx").into_bytes();
    body.extend_from_slice(format!("\r\n--{long}--").as_bytes());
    match multipart(&long, body) {
        Err(ao_core::Error::Multipart(reason)) => assert!(reason.contains("70"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let n = 20_000;
    let boundary = "b".repeat(70);
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data;name=\"k{i}\"\r\n\r\nv{i}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--").as_bytes());
    let m = multipart(&boundary, body).unwrap();
    for i in [0, 777, n - 1] {
        assert_eq!(m.get_str(&format!("k{i}")), Some(format!("v{i}").as_str()));
    }
}
