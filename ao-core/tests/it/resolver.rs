//! The resolver cases of HyperBEAM's `hb_ao_test_vectors` (spec §10.1), with test devices.

use std::sync::Arc;

use ao_core::path::{Limits, Request, Step};
use ao_core::{
    BoxFuture, Context, Device, DeviceInfo, DeviceRegistry, Error, MemoryStore, Message, Resolver,
    Result, Store, Value, msg,
};
use futures::executor::block_on;

/// `test-device@1.0`: a few fixed keys, like HyperBEAM's `dev_test`.
struct TestDevice;

impl Device for TestDevice {
    fn id(&self) -> &str {
        "test-device@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out: Result<Value> = match key {
            "test_func" => Ok(Value::from("GOOD_FUNCTION")),
            // Arity-style functions: only the base, then base and request.
            "key_using_only_state" => Ok(base
                .get("state_key")
                .cloned()
                .unwrap_or(Value::from("none"))),
            "key_using_state_and_request" => {
                let a = base.get_str("state").unwrap_or("");
                let b = req.get_str("arg").unwrap_or("");
                Ok(Value::from(format!("{a}{b}")))
            }
            "set" => {
                let count = base.get_str("set_count").unwrap_or("").to_owned();
                let mut out = ao_core::message_device::set(base, req)
                    .map(|m| m.with("set_count", format!("{count}.")));
                if let Ok(m) = &mut out {
                    m.insert("modified", true);
                }
                out.map(Value::Message)
            }
            _ => return None,
        };
        Some(Box::pin(async move { out }))
    }
}

/// A device whose handler answers every key.
struct HandlerDevice;

impl Device for HandlerDevice {
    fn id(&self) -> &str {
        "handler@1.0"
    }
    fn call<'a>(
        &'a self,
        _: &'a str,
        _: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        Some(Box::pin(async { Ok(Value::from("HANDLER VALUE")) }))
    }
}

/// A device with one explicit key and a default for the rest.
struct DefaultDevice;

impl Device for DefaultDevice {
    fn id(&self) -> &str {
        "default@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        _: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let v = if key == "state_key" {
            "STATE"
        } else {
            "DEFAULT"
        };
        Some(Box::pin(async move { Ok(Value::from(v)) }))
    }
}

/// A device exporting only `test1` and `test2`, excluding `set`.
struct ExportsDevice;

impl Device for ExportsDevice {
    fn id(&self) -> &str {
        "exports@1.0"
    }
    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["test1", "test2", "set", "test5"]).excluding(["set"])
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        _: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        match key {
            "test1" | "test2" => Some(Box::pin(async move {
                Ok(Value::from(format!("{key} from device")))
            })),
            "set" => Some(Box::pin(async {
                Ok(Value::from("device set must not be called"))
            })),
            _ => None,
        }
    }
}

fn resolver() -> Resolver {
    let registry = DeviceRegistry::builder()
        .register(TestDevice)
        .register(HandlerDevice)
        .register(DefaultDevice)
        .register(ExportsDevice)
        .build();
    Resolver::builder(registry)
        .store(Arc::new(MemoryStore::new()))
        .build()
}

fn get(r: &Resolver, m: Message, path: &str) -> Result<Value> {
    block_on(r.resolve(m, Message::new().with("path", path)))
}

fn steps(r: &Resolver, steps: Vec<Step>) -> Result<Value> {
    block_on(r.context().resolve_steps(steps))
}

fn p(path: &str) -> Step {
    Step::message(Message::new().with("path", path))
}

#[test]
fn resolve_simple() {
    assert_eq!(
        get(&resolver(), msg! {"a" => "RESULT"}, "a").unwrap(),
        Value::from("RESULT")
    );
}

#[test]
fn resolve_id() {
    let id = get(&resolver(), msg! {"test_key" => "1"}, "id").unwrap();
    assert_eq!(id.as_bytes().unwrap().len(), 43);
}

#[test]
fn start_as() {
    let r = resolver();
    let first = Step::As {
        device: "test-device@1.0".into(),
        request: Request::new(msg! {"path" => ""}),
    };
    assert_eq!(
        steps(&r, vec![first, p("test_func")]).unwrap(),
        Value::from("GOOD_FUNCTION")
    );
    // The same through the HyperPATH parser.
    assert_eq!(
        block_on(r.resolve_path("/~test-device@1.0/test_func")).unwrap(),
        Value::from("GOOD_FUNCTION")
    );
}

#[test]
fn start_as_with_parameters() {
    let r = resolver();
    let v = block_on(r.resolve_path("/~message@1.0&greeting=\"Hello\"&count+integer=42/count"))
        .unwrap();
    assert_eq!(v, Value::Integer(42));
    let v = block_on(r.resolve_path("/~message@1.0&greeting=\"Hello\"/greeting")).unwrap();
    assert_eq!(v, Value::from("Hello"));
}

fn with_test_device() -> Message {
    msg! {"device" => "test-device@1.0", "test_func" => msg! {"test_key" => "MESSAGE"}}
}

#[test]
fn load_as() {
    let r = resolver();
    let id =
        ao_core::cache::write_message(r.store().unwrap().as_ref(), &with_test_device()).unwrap();
    let first = Step::As {
        device: "message@1.0".into(),
        request: Request::new(msg! {"path" => id.as_str()}),
    };
    assert_eq!(
        steps(&r, vec![first, p("test_func"), p("test_key")]).unwrap(),
        Value::from("MESSAGE")
    );
    // And through a path: `/<ID>~message@1.0/test_func/test_key`.
    let v = block_on(r.resolve_path(&format!("/{id}~message@1.0/test_func/test_key"))).unwrap();
    assert_eq!(v, Value::from("MESSAGE"));
    // Without `as`, the message's own device answers.
    assert_eq!(
        block_on(r.resolve_path(&format!("/{id}/test_func"))).unwrap(),
        Value::from("GOOD_FUNCTION")
    );
    // A missing ID is a 404.
    let missing =
        block_on(r.resolve_path("/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/x")).unwrap_err();
    assert_eq!(missing.http_status(), 404);
}

#[test]
fn as_path() {
    let r = resolver();
    let as_step = Step::As {
        device: "message@1.0".into(),
        request: Request::new(msg! {"path" => "test_func"}),
    };
    let v = steps(&r, vec![Step::message(with_test_device()), as_step]).unwrap();
    assert_eq!(v, Value::Message(msg! {"test_key" => "MESSAGE"}));
}

#[test]
fn continue_as() {
    let r = resolver();
    let as_step = Step::As {
        device: "message@1.0".into(),
        request: Request::new(msg! {"path" => ""}),
    };
    let v = steps(
        &r,
        vec![
            Step::message(with_test_device()),
            as_step,
            p("test_func"),
            p("test_key"),
        ],
    )
    .unwrap();
    assert_eq!(v, Value::from("MESSAGE"));
}

#[test]
fn resolve_key_twice() {
    let r = resolver();
    let m = msg! {"a" => msg! {"b" => "c"}};
    assert_eq!(get(&r, m.clone(), "a").unwrap(), get(&r, m, "a").unwrap());
}

#[test]
fn resolve_from_multiple_keys_hides_private_keys() {
    let v = get(&resolver(), msg! {"a" => "1", "priv_a" => "2"}, "keys").unwrap();
    assert_eq!(v, Value::List(vec![Value::from("a")]));
    assert_eq!(
        get(&resolver(), msg! {"a" => "1", "priv_a" => "2"}, "priv_a")
            .unwrap_err()
            .http_status(),
        404
    );
}

#[test]
fn resolve_path_element_and_binary_key() {
    let r = resolver();
    let m = msg! {"path" => Value::List(vec![Value::from("test_path")])};
    assert_eq!(
        get(&r, m.clone(), "path").unwrap(),
        Value::List(vec![Value::from("test_path")])
    );
    assert_eq!(
        get(&r, m, "Path").unwrap(),
        Value::List(vec![Value::from("test_path")])
    );
    let m = msg! {"Test-Header" => "x"};
    assert_eq!(get(&r, m.clone(), "Test-Header").unwrap(), Value::from("x"));
    assert_eq!(get(&r, m, "test-header").unwrap(), Value::from("x"));
}

#[test]
fn device_functions_see_base_and_request() {
    let r = resolver();
    let m = msg! {"device" => "test-device@1.0", "state_key" => "1", "state" => "13"};
    assert_eq!(
        get(&r, m.clone(), "key_using_only_state").unwrap(),
        Value::from("1")
    );
    let v = block_on(r.resolve(
        m,
        msg! {"path" => "key_using_state_and_request", "arg" => "37"},
    ))
    .unwrap();
    assert_eq!(v, Value::from("1337"));
}

#[test]
fn device_with_handler_function() {
    let r = resolver();
    let m = msg! {"device" => "handler@1.0"};
    assert_eq!(
        get(&r, m.clone(), "anything").unwrap(),
        Value::from("HANDLER VALUE")
    );
    assert_eq!(get(&r, m, "else").unwrap(), Value::from("HANDLER VALUE"));
}

#[test]
fn device_with_default_handler_function() {
    let r = resolver();
    let m = msg! {"device" => "default@1.0"};
    assert_eq!(
        get(&r, m.clone(), "state_key").unwrap(),
        Value::from("STATE")
    );
    assert_eq!(get(&r, m, "unknown").unwrap(), Value::from("DEFAULT"));
}

#[test]
fn recursive_gets() {
    let r = resolver();
    let m = msg! {
        "key1" => "value1",
        "key2" => msg! {"key3" => "value3", "key4" => msg! {"key5" => "value5", "key6" => msg! {"key7" => "value7"}}},
    };
    assert_eq!(get(&r, m.clone(), "key1").unwrap(), Value::from("value1"));
    assert_eq!(
        get(&r, m.clone(), "key2/key3").unwrap(),
        Value::from("value3")
    );
    assert_eq!(
        get(&r, m.clone(), "key2/key4/key6/key7").unwrap(),
        Value::from("value7")
    );
    let list_path = msg! {"path" => Value::List(vec!["key2".into(), "key4".into(), "key5".into()])};
    assert_eq!(
        block_on(r.resolve(m, list_path)).unwrap(),
        Value::from("value5")
    );
}

#[test]
fn basic_and_deep_set() {
    let r = resolver();
    let m = msg! {"key1" => "value1", "key2" => "value2"};
    let v = block_on(r.resolve(m, msg! {"path" => "set", "key1" => "new_value1"})).unwrap();
    assert_eq!(
        v,
        Value::Message(msg! {"key1" => "new_value1", "key2" => "value2"})
    );

    let m = msg! {"a" => msg! {"b" => msg! {"c" => "1"}, "keep" => "k"}};
    let v = block_on(r.resolve(m.clone(), msg! {"path" => "set", "a/b/c" => "2"})).unwrap();
    assert_eq!(
        v,
        Value::Message(msg! {"a" => msg! {"b" => msg! {"c" => "2"}, "keep" => "k"}})
    );
    // A map value deep-merges by default, and replaces with `set-mode: explicit`.
    let v = block_on(r.resolve(
        m.clone(),
        msg! {"path" => "set", "a" => msg! {"new" => "n"}},
    ))
    .unwrap();
    assert_eq!(
        v,
        Value::Message(msg! {"a" => msg! {"b" => msg! {"c" => "1"}, "keep" => "k", "new" => "n"}})
    );
    let v = block_on(r.resolve(
        m.clone(),
        msg! {"path" => "set", "set-mode" => "explicit", "a" => msg! {"new" => "n"}},
    ))
    .unwrap();
    assert_eq!(v, Value::Message(msg! {"a" => msg! {"new" => "n"}}));
    // `unset` removes; `undefined` is ignored; emptied maps disappear.
    let v = block_on(r.resolve(
        m,
        msg! {"path" => "set", "a/keep" => Value::atom("unset"), "x" => Value::atom("undefined")},
    ))
    .unwrap();
    assert_eq!(
        v,
        Value::Message(msg! {"a" => msg! {"b" => msg! {"c" => "1"}}})
    );
    let v = block_on(r.resolve(
        msg! {"deep" => msg! {"k" => "v"}},
        msg! {"path" => "set", "deep/k" => Value::atom("unset")},
    ))
    .unwrap();
    assert_eq!(v, Value::Message(Message::new()));
}

#[test]
fn set_with_device_and_remove() {
    let r = resolver();
    let m = msg! {"device" => "test-device@1.0", "set_count" => "."};
    let v = block_on(r.resolve(m, msg! {"path" => "set", "x" => "1"})).unwrap();
    let Value::Message(out) = v else { panic!() };
    assert_eq!(out.get_str("set_count"), Some(".."));
    assert_eq!(out.get_str("x"), Some("1"));
    let m = msg! {"a" => "1", "b" => "2", "c" => "3"};
    let v = block_on(r.resolve(m.clone(), msg! {"path" => "remove", "item" => "a"})).unwrap();
    assert_eq!(v, Value::Message(msg! {"b" => "2", "c" => "3"}));
    let v = block_on(r.resolve(
        m,
        msg! {"path" => "remove", "items" => Value::List(vec!["a".into(), "b".into()])},
    ))
    .unwrap();
    assert_eq!(v, Value::Message(msg! {"c" => "3"}));
}

#[test]
fn get_as_with_device_bypasses_the_device() {
    let r = resolver();
    let m = msg! {"device" => "handler@1.0", "test_key" => "STORED"};
    assert_eq!(
        get(&r, m.clone(), "test_key").unwrap(),
        Value::from("HANDLER VALUE")
    );
    let as_step = Step::As {
        device: "message@1.0".into(),
        request: Request::new(msg! {"path" => "test_key"}),
    };
    assert_eq!(
        steps(&r, vec![Step::message(m), as_step]).unwrap(),
        Value::from("STORED")
    );
}

#[test]
fn device_exports_and_excludes() {
    let r = resolver();
    let m = msg! {"device" => "exports@1.0", "test3" => "stored 3", "test4" => "stored 4"};
    assert_eq!(
        get(&r, m.clone(), "test1").unwrap(),
        Value::from("test1 from device")
    );
    assert_eq!(
        get(&r, m.clone(), "test3").unwrap(),
        Value::from("stored 3")
    );
    assert_eq!(get(&r, m.clone(), "test5").unwrap_err().http_status(), 404);
    // `set` is excluded: message@1.0 sets the key.
    let v = block_on(r.resolve(m, msg! {"path" => "set", "Test4" => "new"})).unwrap();
    assert_eq!(v.as_message().unwrap().get_str("test4"), Some("new"));
}

#[test]
fn denormalized_device_key() {
    let r = resolver();
    let m = msg! {"Device" => "Test-Device@1.0"};
    assert_eq!(
        get(&r, m, "test_func").unwrap(),
        Value::from("GOOD_FUNCTION")
    );
}

#[test]
fn unknown_device_is_an_error() {
    let e = get(&resolver(), msg! {"device" => "nope@1.0"}, "x").unwrap_err();
    assert!(matches!(e, Error::DeviceNotLoadable(_)));
}

#[test]
fn list_transform() {
    let r = resolver();
    let list = Value::List(vec![
        "a".into(),
        "b".into(),
        "c".into(),
        "d".into(),
        "e".into(),
    ]);
    let m = msg! {"items" => list};
    for (i, want) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        assert_eq!(
            get(&r, m.clone(), &format!("items/{}", i + 1)).unwrap(),
            Value::from(*want)
        );
    }
}

#[test]
fn sub_resolutions_in_paths() {
    let r = resolver();
    // `(…)` as a value: the key's value is the result of the inner path.
    let v = block_on(r.resolve_path("/~message@1.0&k=(/~message@1.0&x=inner/x)/k")).unwrap();
    assert_eq!(v, Value::from("inner"));
    let v = block_on(r.resolve_path("/~message@1.0&a=1/(~message@1.0&k=a/k)")).unwrap();
    assert_eq!(v, Value::from("1"));
}

#[test]
fn runaway_recursion_is_bounded() {
    struct Loop;
    impl Device for Loop {
        fn id(&self) -> &str {
            "loop@1.0"
        }
        fn call<'a>(
            &'a self,
            key: &'a str,
            base: &'a Message,
            _: &'a Message,
            ctx: &'a Context,
        ) -> Option<BoxFuture<'a, Result<Value>>> {
            Some(Box::pin(async move { ctx.get(base.clone(), key).await }))
        }
    }
    let r = Resolver::builder(DeviceRegistry::builder().register(Loop).build()).build();
    let e = get(&r, msg! {"device" => "loop@1.0"}, "x").unwrap_err();
    assert!(matches!(e, Error::TooDeep(_)));
}

#[test]
fn registry_ids_are_checked() {
    let r = DeviceRegistry::builder().register(TestDevice).build();
    assert_eq!(r.ids(), vec!["message@1.0", "test-device@1.0"]);
    assert!(ao_core::device::is_valid_id("wasm-64@1.0"));
    assert!(!ao_core::device::is_valid_id("Message"));
    let dup = std::panic::catch_unwind(|| {
        DeviceRegistry::builder()
            .register(TestDevice)
            .register(TestDevice)
    });
    assert!(dup.is_err());
    let _ = Limits::default();
    let _ = MemoryStore::new().read("x");
}
