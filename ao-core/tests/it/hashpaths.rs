//! `vectors/hashpaths.json`.

use std::sync::Arc;

use ao_core::hashpath;
use ao_core::id::{self, IdScope};
use ao_core::util::b64u;
use ao_core::{Message, Resolver, Value};

use crate::fixtures::{self, vectors};

#[test]
fn hashpath_vectors() {
    let file = vectors("hashpaths.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let mut msg1 = if v["msg1"].is_object() {
            fixtures::message(&v["msg1"])
        } else {
            Message::new()
        };
        if let Some(expected_id) = v["msg1_id"].as_str() {
            assert_eq!(
                b64u(&id::id(&msg1, IdScope::All).unwrap()),
                expected_id,
                "{name}: msg1 ID"
            );
        }
        if let Some(hp) = v["msg1_priv_hashpath"].as_str() {
            msg1.set_hashpath(Some(Arc::from(hp)));
        }
        let msg2 = fixtures::message(&v["msg2"]);
        assert_eq!(
            hashpath::leaf_of(&msg2).unwrap(),
            v["leaf"].as_str().unwrap(),
            "{name}: leaf"
        );
        assert_eq!(
            hashpath::hashpath(&msg1, &msg2).unwrap(),
            v["hashpath"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn resolve_examples_leave_the_stated_hashpaths() {
    let resolver = Resolver::basic();
    let file = vectors("hashpaths.json");
    for v in file["resolve_examples"].as_array().unwrap() {
        let msg1 = fixtures::message(&v["msg1"]);
        let msg2 = if v["msg2"].is_object() {
            fixtures::message(&v["msg2"])
        } else {
            Message::new().with("path", v["path"].as_str().unwrap())
        };
        let got = futures::executor::block_on(resolver.resolve(msg1, msg2)).unwrap();
        let expected = fixtures::value(&v["result"]);
        assert_eq!(got, expected);
        match (&got, v["result_priv_hashpath"].as_str()) {
            (Value::Message(m), Some(hp)) => assert_eq!(m.hashpath(), Some(hp)),
            (Value::Binary(_), None) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn verify_hashpath_chain() {
    let resolver = Resolver::basic();
    let base = fixtures::message(&serde_json::json!({"a": {"b": {"c": "d"}}}));
    let got = futures::executor::block_on(
        resolver.resolve(base.clone(), Message::new().with("path", "a/b")),
    )
    .unwrap();
    let Value::Message(m) = got else {
        panic!("expected a message")
    };
    let hp = m.hashpath().unwrap().to_owned();
    assert_eq!(hp.len(), 45, "{hp}");
    let steps = [
        Message::new().with("path", "a"),
        Message::new().with("path", "b"),
    ];
    assert!(hashpath::verify(&base, &steps, &hp).unwrap());
    let forged = [
        Message::new().with("path", "a"),
        Message::new().with("path", "x"),
    ];
    assert!(!hashpath::verify(&base, &forged, &hp).unwrap());
}
