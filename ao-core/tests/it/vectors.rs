//! The gold vectors of `vectors/unsigned-ids.json`, `decoding.json` and `misc.json`.

use ao_core::codec::{self, flat, httpsig, json, structured};
use ao_core::id::{self, IdScope};
use ao_core::util::b64u;
use ao_core::{Key, Message, Value};
use bytes::Bytes;

use crate::fixtures::{self, vectors};

fn http_from_json(j: &serde_json::Value) -> httpsig::HttpMessage {
    let headers = j["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), Bytes::from(v.as_str().unwrap().to_owned())))
        .collect();
    let body = j["body"].as_str().map(|s| Bytes::from(s.to_owned()));
    httpsig::HttpMessage { headers, body }
}

#[test]
fn unsigned_ids_and_wire_forms() {
    let file = vectors("unsigned-ids.json");
    let all = file["vectors"].as_array().unwrap();
    assert!(all.len() >= 27);
    for v in all {
        let name = v["name"].as_str().unwrap();
        let msg = fixtures::message(&v["message"]);
        let expected_http = http_from_json(&v["httpsig"]);
        let http = codec::to_http(&msg).unwrap_or_else(|e| panic!("{name}: encode: {e}"));
        assert_eq!(http, expected_http, "{name}: httpsig encoding");
        let got = b64u(&id::unsigned_id(&msg).unwrap());
        assert_eq!(got, v["id"].as_str().unwrap(), "{name}: unsigned ID");
        // Unsigned messages: the default ID and the signed-only ID equal the unsigned ID.
        assert_eq!(b64u(&id::id(&msg, IdScope::All).unwrap()), got, "{name}");
        assert_eq!(b64u(&id::id(&msg, IdScope::Signed).unwrap()), got, "{name}");
    }
}

#[test]
fn unsigned_id_signature_bases() {
    let file = vectors("unsigned-ids.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let msg = fixtures::message(&v["message"]);
        let http = codec::to_http(&msg).unwrap();
        let comps = id::hmac_components(http.headers.keys().map(String::as_str));
        let base = id::signature_base(&comps, &http, &[("alg", "hmac-sha256"), ("keyid", "ao")]);
        assert_eq!(
            String::from_utf8(base).unwrap(),
            v["hmac_signature_base"].as_str().unwrap(),
            "{name}: signature base"
        );
    }
}

#[test]
fn wire_forms_decode_back_to_the_same_id() {
    let file = vectors("unsigned-ids.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let msg = fixtures::message(&v["message"]);
        let http = http_from_json(&v["httpsig"]);
        let decoded = codec::from_http(&http).unwrap_or_else(|e| panic!("{name}: decode: {e}"));
        // Decoding keeps `body-keys` and `content-type`; the ID ignores `body-keys` but covers
        // `content-type`, so compare the content without them.
        let mut content = decoded.clone();
        for k in ["body-keys", "content-type", "inline-body-key"] {
            if !msg.contains(k) {
                content.remove(k);
            }
        }
        assert_eq!(content, msg, "{name}: decoded message");
        if !decoded.contains("content-type") || msg.contains("content-type") {
            assert_eq!(
                id::unsigned_id(&decoded.clone().without("body-keys")).unwrap(),
                id::unsigned_id(&msg).unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn decoding_vectors() {
    let file = vectors("decoding.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let http = http_from_json(&v["request"]);
        let tabm = httpsig::decode(&http).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tabm, fixtures::tabm(&v["expected_tabm"]), "{name}: TABM");
        let msg = structured::from_tabm(&tabm).unwrap();
        assert_eq!(
            msg,
            fixtures::message(&v["expected_message"]),
            "{name}: message"
        );
        if let Some(expected) = v["id"].as_str() {
            assert_eq!(
                b64u(&id::unsigned_id(&msg).unwrap()),
                expected,
                "{name}: ID"
            );
        }
    }
}

#[test]
fn key_normalisation() {
    let misc = vectors("misc.json");
    for v in misc["normalize_key"]["vectors"].as_array().unwrap() {
        let out = v["output"].as_str().unwrap();
        if let Some(s) = v["input"].as_str().or(v["input_charlist"].as_str()) {
            assert_eq!(Key::new(s).as_str(), out, "{s}");
        } else if let Some(i) = v["input"].get("int") {
            assert_eq!(Key::from(i.as_i64().unwrap()).as_str(), out);
        } else if let Some(parts) = v["input"].as_array() {
            let joined: Vec<String> = parts
                .iter()
                .map(|p| Key::new(p.as_str().unwrap()).to_string())
                .collect();
            assert_eq!(joined.join("/"), out);
        }
    }
    for len in misc["id_shaped_lengths"].as_array().unwrap() {
        assert!(ao_core::key::is_id_shaped(&vec![
            b'A';
            len.as_u64().unwrap()
                as usize
        ]));
    }
    for k in misc["private_keys"]["private"].as_array().unwrap() {
        assert!(ao_core::key::is_private(k.as_str().unwrap()));
    }
    for k in misc["private_keys"]["not_private"].as_array().unwrap() {
        assert!(!ao_core::key::is_private(k.as_str().unwrap()));
    }
}

#[test]
fn escaping_floats_lists_atoms_integers() {
    let misc = vectors("misc.json");
    for v in misc["ao_types_key_escape"]["vectors"].as_array().unwrap() {
        if let Some(input) = v["input"].as_str() {
            let out = ao_core::escape::encode(input.as_bytes());
            assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                v["output"].as_str().unwrap()
            );
            assert_eq!(ao_core::escape::decode(&out), input.as_bytes());
        } else {
            let input = v["input_prefix"].as_str().unwrap();
            let out = ao_core::escape::encode(input.as_bytes());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                v["output_prefix"].as_str().unwrap()
            );
        }
    }
    for v in misc["float_text"]["vectors"].as_array().unwrap() {
        let x: f64 = match &v["input"] {
            serde_json::Value::String(s) => s.parse().unwrap(),
            n => n.as_f64().unwrap(),
        };
        let text = structured::format_float(x).unwrap();
        assert_eq!(text, v["output"].as_str().unwrap());
        assert_eq!(
            structured::parse_float(text.as_bytes()).unwrap().to_bits(),
            x.to_bits()
        );
    }
    let list = fixtures::value(&misc["scalar_list"]["input"]);
    let (ty, text) = structured::encode_scalar(&list, 0).unwrap();
    assert_eq!(ty, "list");
    assert_eq!(
        String::from_utf8(text.clone()).unwrap(),
        misc["scalar_list"]["output"].as_str().unwrap()
    );
    assert_eq!(structured::decode_value("list", &text).unwrap(), list);

    let atom = fixtures::value(&misc["atom_encoding"]["input"]);
    let (ty, text) = structured::encode_scalar(&atom, 0).unwrap();
    assert_eq!(ty, misc["atom_encoding"]["ao_type"].as_str().unwrap());
    assert_eq!(
        String::from_utf8(text).unwrap(),
        misc["atom_encoding"]["output"].as_str().unwrap()
    );

    let big = fixtures::value(&misc["integer_limits"]["encodes"]["input"]);
    let (_, text) = structured::encode_scalar(&big, 0).unwrap();
    assert_eq!(
        String::from_utf8(text.clone()).unwrap(),
        misc["integer_limits"]["encodes"]["output"]
            .as_str()
            .unwrap()
    );
    assert!(matches!(
        structured::decode_value("integer", &text),
        Err(ao_core::Error::BadTypedValue { .. })
    ));
}

#[test]
fn flat_and_json_text() {
    let misc = vectors("misc.json");
    let msg = fixtures::message(&misc["flat"]["input"]);
    let text = codec::to_flat(&msg).unwrap();
    assert_eq!(
        String::from_utf8(text.clone()).unwrap(),
        misc["flat"]["text"].as_str().unwrap()
    );
    assert_eq!(codec::from_flat(&text).unwrap(), msg);

    let msg = fixtures::message(&misc["json"]["input"]);
    let text = codec::to_json(&msg).unwrap();
    assert_eq!(
        String::from_utf8(text.clone()).unwrap(),
        misc["json"]["text"].as_str().unwrap()
    );
    assert_eq!(codec::from_json(&text).unwrap(), msg);
    // Plain JSON numbers decode to integers.
    assert_eq!(
        codec::from_json(br#"{"a": 1}"#).unwrap().get("a"),
        Some(&Value::Integer(1))
    );
    // Flat text: a value containing ": " is kept (HyperBEAM drops the line; spec §11 item 20).
    let m = flat::deserialize(b"a: b: c\n").unwrap();
    assert_eq!(m.get_str("a"), Some("b: c"));
    assert!(json::decode(b"{\"a\": ").is_err());
    // Regression (fuzz target `flat`): a value ending in CR survives serialise → parse.
    let m = Message::new().with("a", "v\r");
    assert_eq!(flat::deserialize(&flat::serialize(&m).unwrap()).unwrap(), m);
}

#[test]
fn default_keys_are_filtered_on_decode() {
    let misc = vectors("misc.json");
    let v = &misc["default_keys_filtered_on_decode"];
    let before = fixtures::message(&v["input_structured_before_decode"]);
    let tabm = structured::to_tabm(&before).unwrap();
    assert_eq!(
        structured::from_tabm(&tabm).unwrap(),
        fixtures::message(&v["decoded"])
    );
}

#[test]
fn malformed_input_is_a_typed_error() {
    use ao_core::Error;
    let bad_types = Message::new()
        .with("ao-types", "x=\"integer")
        .with("x", "1");
    assert!(matches!(
        structured::from_tabm(&bad_types),
        Err(Error::StructuredField { .. })
    ));
    let unknown = Message::new()
        .with("ao-types", "x=\"nonsense\"")
        .with("x", "1");
    assert!(matches!(
        structured::from_tabm(&unknown),
        Err(Error::UnknownType(_))
    ));
    let http = httpsig::HttpMessage {
        headers: [(
            "content-type".to_owned(),
            Bytes::from_static(b"multipart/form-data; boundary=\"zz\""),
        )]
        .into_iter()
        .collect(),
        body: Some(Bytes::from_static(b"--zz\r\nno disposition\r\n--zz--")),
    };
    assert!(matches!(httpsig::decode(&http), Err(Error::Multipart(_))));
    let http = httpsig::HttpMessage {
        headers: [(
            "content-type".to_owned(),
            Bytes::from_static(b"multipart/form-data; boundary=\"zz\""),
        )]
        .into_iter()
        .collect(),
        body: Some(Bytes::from_static(b"garbage")),
    };
    assert!(matches!(httpsig::decode(&http), Err(Error::Multipart(_))));
    assert!(matches!(
        Key::from_utf8(&[0xff, 0xfe]),
        Err(Error::InvalidKey(_))
    ));
}
