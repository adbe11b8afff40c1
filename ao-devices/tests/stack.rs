//! `stack@1.0` and `multipass@1.0`: HyperBEAM's `dev_stack` and `dev_multipass` tests, ported,
//! plus error strategies, hashpaths and bad input.

mod common;

use ao_core::{Error, Flow, Message, Value, msg};
use common::{msg, resolve, resolver, stack_of};

fn stack(names: &[&str]) -> Message {
    msg! {
        "device" => "stack@1.0",
        "device-stack" => stack_of(names),
        "result" => "INIT",
    }
}

fn append(bin: &str) -> Message {
    msg! { "path" => "append", "bin" => bin }
}

#[test]
fn transform_internal_call_device() {
    let m = msg! {
        "device" => "stack@1.0",
        "device-stack" => stack_of(&["append-d1@1.0", "message@1.0"]),
    };
    let t = ao_devices::stack::transform(&m, "2", Value::Integer(2))
        .unwrap()
        .expect("member 2");
    assert_eq!(t.get_str("device"), Some("message@1.0"));
    assert_eq!(t.get("device-key"), Some(&Value::Integer(2)));
    assert_eq!(t.get_str("previous-device"), Some("stack@1.0"));
    assert!(
        ao_devices::stack::transform(&m, "3", Value::Integer(3))
            .unwrap()
            .is_none()
    );
}

#[test]
fn transform_external_call_device() {
    let (r, _) = resolver();
    let m = msg! {
        "device" => "stack@1.0",
        "device-stack" => msg! { "make-cool" => "cool@1.0" },
        "value" => "Super",
    };
    let out = msg(resolve(
        &r,
        &m,
        msg! { "path" => "/transform/make-cool/value" },
    ));
    assert_eq!(out.get_str("value"), Some("Super-Cool"));
    assert_eq!(out.get_str("device"), Some("cool@1.0"));
    assert!(out.private("priv/stack-transform").is_none());
}

#[test]
fn example_device_for_stack() {
    let (r, _) = resolver();
    let m = msg! { "device" => "append-under@1.0", "result" => "1" };
    let out = msg(resolve(&r, &m, append("2")));
    assert_eq!(out.get_str("result"), Some("1_D2_2"));
}

#[test]
fn simple_stack_execute() {
    let (r, _) = resolver();
    let out = msg(resolve(
        &r,
        &stack(&["append-bang@1.0", "append-under@1.0"]),
        append("2"),
    ));
    assert_eq!(out.get_str("result"), Some("INIT!D1!2_D2_2"));
}

#[test]
fn many_devices() {
    let (r, _) = resolver();
    let names: Vec<String> = (1..=8).map(|i| format!("append-d{i}@1.0")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = msg(resolve(&r, &stack(&names), append("2")));
    assert_eq!(
        out.get_str("result"),
        Some("INIT+D12+D22+D32+D42+D52+D62+D72+D82")
    );
}

#[test]
fn five_device_stack_has_deterministic_hashpaths() {
    let names = [
        "append-d1@1.0",
        "append-d2@1.0",
        "append-d3@1.0",
        "append-d4@1.0",
        "append-d5@1.0",
    ];
    let base = stack(&names);
    let (r1, _) = resolver();
    let (r2, _) = resolver();
    let a = msg(resolve(&r1, &base, append("2")));
    let b = msg(resolve(&r2, &base, append("2")));
    assert_eq!(a.get_str("result"), Some("INIT+D12+D22+D32+D42+D52"));
    assert_eq!(a, b);
    let expected = ao_core::hashpath::hashpath(&base, &append("2")).unwrap();
    assert_eq!(a.hashpath(), Some(expected.as_str()));
    assert_eq!(a.hashpath(), b.hashpath());
    // The state after the stack is the input state plus the fold's bookkeeping keys, and
    // hashes the same every time.
    assert_eq!(
        ao_core::id::id_string(&a, ao_core::IdScope::All).unwrap(),
        ao_core::id::id_string(&b, ao_core::IdScope::All).unwrap()
    );
    // Resolving on from that state extends the hashpath.
    let c = msg(resolve(&r1, &a, append("3")));
    let expected = ao_core::hashpath::hashpath(&a, &append("3")).unwrap();
    assert_eq!(c.hashpath(), Some(expected.as_str()));
}

#[test]
fn fold_restores_device_and_bookkeeping() {
    let (r, _) = resolver();
    let out = msg(resolve(
        &r,
        &stack(&["append-d1@1.0", "append-d2@1.0"]),
        append("2"),
    ));
    assert_eq!(out.get_str("device"), Some("stack@1.0"));
    assert!(!out.contains("device-key"));
    assert!(!out.contains("pass"));
    // As in HyperBEAM, the last member is remembered.
    assert_eq!(out.get_str("previous-device"), Some("append-d1@1.0"));

    // A `pass` the caller set is put back.
    let out = msg(resolve(
        &r,
        &stack(&["append-d1@1.0"]).with("pass", 7i64),
        append("2"),
    ));
    assert_eq!(out.get("pass"), Some(&Value::Integer(7)));
}

#[test]
fn device_stack_as_list() {
    let (r, _) = resolver();
    let base = msg! {
        "device" => "stack@1.0",
        "device-stack" => Value::List(vec!["append-d1@1.0".into(), "append-d2@1.0".into()]),
        "result" => "INIT",
    };
    let out = msg(resolve(&r, &base, append("2")));
    assert_eq!(out.get_str("result"), Some("INIT+D12+D22"));
}

fn prefix_msg() -> Message {
    msg! {
        "device" => "stack@1.0",
        "device-stack" => stack_of(&["prefix-set@1.0", "prefix-set@1.0"]),
    }
}

#[test]
fn no_prefix() {
    let (r, _) = resolver();
    let req = msg! { "path" => "prefix_set", "key" => "example", "example" => 1i64 };
    let out = msg(resolve(&r, &prefix_msg(), req));
    assert_eq!(out.get("example"), Some(&Value::Integer(1)));
}

#[test]
fn output_prefix() {
    let (r, _) = resolver();
    let base = prefix_msg().with("output-prefixes", msg! { "1" => "out1/", "2" => "out2/" });
    let req = msg! { "path" => "prefix_set", "key" => "example", "example" => 1i64 };
    let out = msg(resolve(&r, &base, req));
    let get = |p: &str| ao_devices::stack::get_path(&out, p).cloned();
    assert_eq!(get("out1/example"), Some(Value::Integer(1)));
    assert_eq!(get("out2/example"), Some(Value::Integer(1)));
}

#[test]
fn input_and_output_prefixes() {
    let (r, _) = resolver();
    let base = prefix_msg()
        .with("input-prefixes", msg! { 1i64 => "in1/", 2i64 => "in2/" })
        .with("output-prefixes", msg! { 1i64 => "out1/", 2i64 => "out2/" });
    let req = msg! {
        "path" => "prefix_set",
        "key" => "example",
        "in1" => msg! { "example" => 1i64 },
        "in2" => msg! { "example" => 2i64 },
    };
    let out = msg(resolve(&r, &base, req));
    let get = |p: &str| ao_devices::stack::get_path(&out, p).cloned();
    assert_eq!(get("out1/example"), Some(Value::Integer(1)));
    assert_eq!(get("out2/example"), Some(Value::Integer(2)));
}

#[test]
fn input_output_prefixes_passthrough() {
    let (r, _) = resolver();
    let base = prefix_msg()
        .with("output-prefix", "combined-out/")
        .with("input-prefix", "combined-in/");
    let req = msg! {
        "path" => "prefix_set",
        "key" => "example",
        "combined-in" => msg! { "example" => 1i64 },
    };
    let out = msg(resolve(&r, &base, req));
    assert_eq!(
        ao_devices::stack::get_path(&out, "combined-out/example"),
        Some(&Value::Integer(1))
    );
    // The prefixes are the caller's again once the stack is done.
    assert_eq!(out.get_str("input-prefix"), Some("combined-in/"));
    assert_eq!(out.get_str("output-prefix"), Some("combined-out/"));
}

#[test]
fn reinvocation() {
    let (r, _) = resolver();
    let first = msg(resolve(
        &r,
        &stack(&["append-d1@1.0", "append-d2@1.0"]),
        append("2"),
    ));
    assert_eq!(first.get_str("result"), Some("INIT+D12+D22"));
    let second = msg(resolve(&r, &first, append("3")));
    assert_eq!(second.get_str("result"), Some("INIT+D12+D22+D13+D23"));
}

#[test]
fn skip() {
    let (r, _) = resolver();
    let out = msg(resolve(
        &r,
        &stack(&["append-skip@1.0", "append-d2@1.0"]),
        append("2"),
    ));
    assert_eq!(out.get_str("result"), Some("INIT+D12"));
    assert_eq!(out.get_str("device"), Some("stack@1.0"));
}

#[test]
fn pass() {
    // The device answers `pass` until pass 3, where it answers the state unchanged.
    let (r, _) = resolver();
    let out = msg(resolve(&r, &stack(&["append-pass@1.0"]), append("_")));
    assert_eq!(out.get_str("result"), Some("INIT+D1_+D1_"));
    assert!(!out.contains("pass"));
}

#[test]
fn not_found_members_are_skipped() {
    let (r, _) = resolver();
    let base = stack(&["append-d1@1.0", "append-special@1.0"]);
    let out = msg(resolve(&r, &base, append("_")));
    assert_eq!(out.get_str("result"), Some("INIT+D1_+D2_"));
    // `special` is answered only by member 2; `output` then by `message@1.0` through member 1.
    let v = resolve(&r, &out, msg! { "path" => "special/output" }).unwrap();
    assert_eq!(v, Value::Integer(1337));
}

#[test]
fn simple_map() {
    let (r, _) = resolver();
    let req = msg! { "path" => "append", "mode" => "Map", "bin" => "/" };
    let out = msg(resolve(
        &r,
        &stack(&["append-d1@1.0", "append-d2@1.0"]),
        req,
    ));
    let get =
        |p: &str| ao_devices::stack::get_path(&out, p).and_then(|v| v.as_str().map(str::to_owned));
    assert_eq!(get("1/result").as_deref(), Some("INIT+D1/"));
    assert_eq!(get("2/result").as_deref(), Some("INIT+D2/"));
    assert_eq!(
        out.get_message("2").and_then(|m| m.get_str("device-key")),
        Some("2")
    );
}

#[test]
fn map_mode_from_the_base_and_failures_dropped() {
    let (r, _) = resolver();
    let base = stack(&["append-d1@1.0", "fail@1.0", "append-d3@1.0"]).with("mode", "Map");
    let out = msg(resolve(&r, &base, append("x")));
    assert_eq!(
        out.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["1", "3"]
    );
}

#[test]
fn stack_keys_limit_what_the_stack_runs() {
    let (r, _) = resolver();
    let base = stack(&["append-d1@1.0"]).with(
        "stack-keys",
        Value::List(vec!["init".into(), "compute".into()]),
    );
    // `append` is not a stack key: it is `message@1.0`'s, and the base has no such key.
    assert!(matches!(
        resolve(&r, &base, append("2")),
        Err(Error::NotFound(_))
    ));
    // `result` is read as a plain key.
    assert_eq!(
        resolve(&r, &base, msg! { "path" => "result" }).unwrap(),
        Value::from("INIT")
    );
}

#[test]
fn error_strategy_throw_is_the_default() {
    let (r, _) = resolver();
    let base = stack(&["append-d1@1.0", "fail@1.0", "append-d3@1.0"]);
    let err = resolve(&r, &base, append("2")).unwrap_err();
    assert!(
        matches!(err, Error::BadRequest(ref m) if m.contains("fail@1.0")),
        "{err:?}"
    );
    let err = resolve(&r, &base, append("2").with("error-strategy", "throw")).unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
}

#[test]
fn error_strategy_stop() {
    let (r, _) = resolver();
    let base =
        stack(&["append-d1@1.0", "fail@1.0", "append-d3@1.0"]).with("error-strategy", "stop");
    match resolve(&r, &base, append("2")).unwrap_err() {
        Error::Status {
            status: 400,
            body: Value::Message(body),
        } => {
            assert_eq!(body.get_str("error"), Some("stack_call_failed"));
            assert_eq!(body.get("device-key"), Some(&Value::Integer(2)));
            assert_eq!(body.get_str("device"), Some("fail@1.0"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn error_strategies_continue_and_ignore() {
    let (r, _) = resolver();
    let base = stack(&["append-d1@1.0", "fail@1.0", "append-d3@1.0"]);
    let out = msg(resolve(
        &r,
        &base,
        append("2").with("error-strategy", "continue"),
    ));
    assert_eq!(out.get_str("result"), Some("INIT+D12+D32"));
    assert_eq!(out.get_str("device"), Some("stack@1.0"));
    let out = msg(resolve(
        &r,
        &base.with("error-strategy", "ignore"),
        append("2"),
    ));
    assert_eq!(out.get_str("result"), Some("INIT+D12"));
    assert_eq!(out.get_str("device"), Some("stack@1.0"));
}

#[test]
fn basic_multipass() {
    let (r, _) = resolver();
    let m = msg! { "device" => "multipass@1.0", "passes" => 2i64, "pass" => 1i64 };
    match resolve(&r, &m, msg! { "path" => "Compute" }) {
        Err(Error::Flow {
            flow: Flow::Pass,
            state,
        }) => assert_eq!(state.get("pass"), Some(&Value::Integer(1))),
        other => panic!("expected pass, got {other:?}"),
    }
    let m2 = m.with("pass", 2i64);
    let out = msg(resolve(&r, &m2, msg! { "path" => "Compute" }));
    assert_eq!(out.get("pass"), Some(&Value::Integer(2)));
    // `keys` and `set` stay with message@1.0.
    let set = msg(resolve(&r, &m2, msg! { "path" => "set", "x" => "y" }));
    assert_eq!(set.get_str("x"), Some("y"));
}

#[test]
fn multipass_in_a_stack_runs_it_again() {
    let (r, _) = resolver();
    let base = stack(&["append-d1@1.0", "append-d2@1.0", "multipass@1.0"]).with("passes", 3i64);
    // Pass 1 and 2 append; pass 3 is the append device's "stop" pass.
    let out = msg(resolve(&r, &base, append("x")));
    assert_eq!(out.get_str("result"), Some("INIT+D1x+D2x+D1x+D2x"));
    assert!(!out.contains("pass"));
}

#[test]
fn bad_device_stacks_are_typed_errors() {
    let (r, _) = resolver();
    let cases = [
        msg! { "device" => "stack@1.0" },
        msg! { "device" => "stack@1.0", "device-stack" => "append-d1@1.0" },
        msg! { "device" => "stack@1.0", "device-stack" => msg! { "1" => 5i64 } },
        msg! { "device" => "stack@1.0", "device-stack" => msg! { "1" => msg! { "x" => "y" } } },
        msg! { "device" => "stack@1.0", "device-stack" => msg! { "1" => "" } },
    ];
    for base in cases {
        for mode in ["Fold", "Map"] {
            let err = resolve(&r, &base, append("2").with("mode", mode)).unwrap_err();
            assert!(
                matches!(err, Error::BadRequest(_)),
                "{base:?} {mode}: {err:?}"
            );
        }
    }
    let err = resolve(
        &r,
        &stack(&["append-d1@1.0"]),
        append("2").with("mode", "Zip"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    let err = resolve(
        &r,
        &stack(&["append-d1@1.0"]),
        append("2").with("error-strategy", "explode"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
}

#[test]
fn unknown_member_device() {
    let (r, _) = resolver();
    let err = resolve(
        &r,
        &stack(&["append-d1@1.0", "nonexistent@9.9"]),
        append("2"),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::DeviceNotLoadable(ref d) if d == "nonexistent@9.9"),
        "{err:?}"
    );
    // Map mode drops it.
    let out = msg(resolve(
        &r,
        &stack(&["append-d1@1.0", "nonexistent@9.9"]),
        append("2").with("mode", "Map"),
    ));
    assert_eq!(out.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["1"]);
}

#[test]
fn a_stack_of_itself_hits_the_depth_limit() {
    let (r, _) = resolver();
    let err = resolve(&r, &stack(&["stack@1.0"]), append("2")).unwrap_err();
    assert!(matches!(err, Error::TooDeep(_)), "{err:?}");
}

#[test]
fn endless_passes_are_refused() {
    let (r, _) = resolver();
    match resolve(&r, &stack(&["always-pass@1.0"]), append("2")).unwrap_err() {
        Error::Status { status: 508, .. } => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn skip_and_pass_outside_a_stack_are_unhandled_statuses() {
    let (r, _) = resolver();
    let err = resolve(
        &r,
        &msg! { "device" => "append-skip@1.0", "result" => "" },
        append("2"),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Flow {
            flow: Flow::Skip,
            ..
        }
    ));
    assert_eq!(err.http_status(), 500);
}
