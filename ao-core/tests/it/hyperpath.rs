//! `vectors/hyperpath.json`: HyperPATH → messages, the error cases, and `to` ⇄ `from`.

use ao_core::path::{self, Limits, Request, Step};
use ao_core::{Key, Message, Value};
use serde_json::Value as Json;

use crate::fixtures::{self, vectors};

fn request(j: &Json) -> Request {
    let mut req = Request::default();
    for (k, v) in j.as_object().unwrap() {
        match v.get("resolve") {
            Some(steps) if v.as_object().unwrap().len() == 1 => {
                req.lazy.push((Key::new(k), steps_of(steps)))
            }
            _ => req.message.insert(k.as_str(), fixtures::value(v)),
        }
    }
    req
}

fn step(j: &Json) -> Step {
    let o = j.as_object().unwrap();
    if let Some(id) = o.get("id") {
        return Step::Id(id.as_str().unwrap().to_owned());
    }
    if let (Some(dev), true) = (o.get("as"), o.contains_key("message")) {
        return Step::As {
            device: dev.as_str().unwrap().to_owned(),
            request: request(&j["message"]),
        };
    }
    if o.len() == 1
        && let Some(r) = o.get("resolve")
    {
        return Step::Resolve(steps_of(r));
    }
    Step::Message(request(j))
}

fn steps_of(j: &Json) -> Vec<Step> {
    j.as_array().unwrap().iter().map(step).collect()
}

#[test]
fn parse_vectors() {
    let file = vectors("hyperpath.json");
    for v in file["vectors"].as_array().unwrap() {
        let expected = steps_of(&v["messages"]);
        let got = if let Some(p) = v["path"].as_str() {
            path::parse(p, &Limits::default())
        } else {
            let mut singleton = Message::new();
            for (k, val) in v["request_headers"].as_object().unwrap() {
                singleton.insert(k.as_str(), val.as_str().unwrap());
            }
            path::from_singleton(&singleton, &Limits::default())
        };
        let got = got.unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(
            got,
            expected,
            "{}",
            v.get("path").unwrap_or(&v["request_headers"])
        );
    }
}

#[test]
fn error_vectors() {
    let file = vectors("hyperpath.json");
    let errors = file["errors"].as_array().unwrap();
    let too_long = errors[0]["path"].as_str().unwrap();
    match path::parse(too_long, &Limits::default()) {
        Err(ao_core::Error::Path(reason)) => {
            assert!(reason.contains("segment_too_long"), "{reason}")
        }
        other => panic!("expected segment_too_long, got {other:?}"),
    }
    // `+` before any `=`: never a crash; either an error or the newer typed reading.
    let _ = path::parse(errors[1]["path"].as_str().unwrap(), &Limits::default());
}

#[test]
fn malformed_paths_are_typed_errors() {
    let limits = Limits::default();
    for bad in ["/a/(b/c", "/a/b)/c", "/~/x", "/a&=v", "/a/b?x.y=1"] {
        assert!(
            path::parse(bad, &limits).is_err(),
            "{bad} should be rejected"
        );
    }
    let deep = format!("/{}x{}", "(".repeat(40), ")".repeat(40));
    assert!(matches!(
        path::parse(&deep, &limits),
        Err(ao_core::Error::TooDeep(_))
    ));
    let many = "/a".repeat(limits.max_segments + 1);
    assert!(path::parse(&many, &limits).is_err());
}

#[test]
fn to_then_from_round_trips() {
    let limits = Limits::default();
    let steps = vec![
        Step::message(Message::new()),
        Step::message(Message::new().with("path", "a")),
        Step::message(Message::new().with("path", "b").with("test-key", 123i64)),
        Step::message(Message::new().with("path", "c").with("k", "v")),
    ];
    let singleton = path::to_singleton(&steps).unwrap();
    assert_eq!(singleton.get_str("path"), Some("/a/b/c"));
    assert_eq!(singleton.get_str("2.test-key+integer"), Some("123"));
    assert_eq!(path::from_singleton(&singleton, &limits).unwrap(), steps);
    // A sub-path in a key.
    let steps = vec![
        Step::message(Message::new()),
        Step::message(Message::new().with("path", "a")),
        Step::Message(Request {
            message: Message::new().with("path", "b"),
            lazy: vec![(
                Key::new("test-key"),
                path::parse("/x/y/z", &limits).unwrap(),
            )],
        }),
    ];
    let singleton = path::to_singleton(&steps).unwrap();
    assert_eq!(singleton.get_str("2.test-key+resolve"), Some("/x/y/z"));
    assert_eq!(path::from_singleton(&singleton, &limits).unwrap(), steps);
    // A sub-path in the path.
    let steps = path::parse("/a/(x/y/z)/z", &limits).unwrap();
    assert_eq!(
        path::to_singleton(&steps).unwrap().get_str("path"),
        Some("/a/(/x/y/z)/z")
    );
    assert_eq!(
        path::from_singleton(&path::to_singleton(&steps).unwrap(), &limits).unwrap(),
        steps
    );
    assert!(matches!(steps[2], Step::Resolve(_)));
    let _ = Value::r#true();
}

/// A request never sets a private key (spec §1.3): private names in a path segment, a
/// sub-resolution, the query (plain and scoped) or the singleton are dropped, so the private
/// area keeps only what the node records itself (such as the signers it verified).
#[test]
fn private_keys_in_a_request_are_dropped() {
    let mut singleton = Message::new().with(
        "path",
        "/~meta@1.0/info&priv-verified-signers+list=\"addr\"&Priv-X=1&ok=1\
         /(~message@1.0&privy=2&b=3/b)?priv-q=4&1.private+integer=5&q=6",
    );
    singleton
        .fields_mut()
        .insert(Key::new("priv-h"), Value::from("7"));
    let steps = path::from_singleton(&singleton, &Limits::default()).unwrap();
    fn check(steps: &[Step], public: &mut Vec<String>) {
        for step in steps {
            let req = match step {
                Step::Message(r) | Step::As { request: r, .. } => r,
                Step::Resolve(sub) => {
                    check(sub, public);
                    continue;
                }
                Step::Id(_) => continue,
            };
            assert!(
                req.message.private_fields().is_empty(),
                "{:?}",
                req.message.private_fields()
            );
            for (k, _) in req.message.iter() {
                assert!(!k.is_private(), "{k}");
                public.push(k.as_str().to_owned());
            }
            assert!(req.lazy.iter().all(|(k, _)| !k.is_private()));
        }
    }
    let mut public = Vec::new();
    check(&steps, &mut public);
    // The public keys around them are kept.
    for k in ["ok", "b", "q"] {
        assert!(public.iter().any(|p| p == k), "{k} missing from {public:?}");
    }
}
