//! `patch@1.0`: HyperBEAM's `dev_patch` tests, ported, and patches applied by a stack to a
//! state that is then read at GET paths.

mod common;

use std::sync::Arc;

use ao_core::{
    BoxFuture, Context, Device, Error, Message, Resolver, Result, Value, msg, wallet::Wallet,
};
use ao_devices::stack::get_path;
use common::{msg, resolve};
use futures::executor::block_on;

fn get(m: &Message, path: &str) -> Option<Value> {
    get_path(m, path).cloned()
}

fn resolver() -> Resolver {
    common::resolver().0
}

#[test]
fn uninitialized_patch() {
    let r = resolver();
    let state = msg! {
        "device" => "patch@1.0",
        "results" => msg! {
            "outbox" => msg! {
                "1" => msg! {
                    "method" => "PATCH",
                    "prices" => msg! { "apple" => 100i64, "banana" => 200i64 },
                },
                "2" => msg! {
                    "method" => "GET",
                    "prices" => msg! { "apple" => 1000i64 },
                },
            },
        },
        "other-message" => "other-value",
        "patch-to" => "/",
        "patch-from" => "/results/outbox",
    };
    let out = msg(resolve(&r, &state, msg! { "path" => "compute" }));
    assert_eq!(get(&out, "prices/apple"), Some(Value::Integer(100)));
    assert_eq!(get(&out, "prices/banana"), Some(Value::Integer(200)));
    assert_eq!(get(&out, "results/outbox/1"), None);
    // Non-patch messages stay where they were; the `method` of a patch is not copied.
    assert_eq!(
        get(&out, "results/outbox/2/prices/apple"),
        Some(Value::Integer(1000))
    );
    assert_eq!(out.get("method"), None);
    assert_eq!(out.get_str("other-message"), Some("other-value"));
}

#[test]
fn patch_to_submessage() {
    let r = resolver();
    let wallet = Wallet::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/wallets/key-1.json"
    )))
    .unwrap();
    let signed = ao_core::signature::commit(
        &msg! {
            "method" => "PATCH",
            "prices" => msg! { "apple" => 100i64, "banana" => 200i64 },
        },
        &wallet,
    )
    .unwrap();
    let state = msg! {
        "device" => "patch@1.0",
        "results" => msg! { "outbox" => msg! { "1" => signed } },
        "state" => msg! { "prices" => msg! { "apple" => 1000i64 } },
        "other-message" => "other-value",
        "patch-to" => "/state",
        "patch-from" => "/results/outbox",
    };
    let out = msg(resolve(&r, &state, msg! { "path" => "compute" }));
    assert_eq!(get(&out, "state/prices/apple"), Some(Value::Integer(100)));
    // The patch's commitments are not merged into the state.
    assert_eq!(get(&out, "state/commitments"), None);
    assert_eq!(
        get(&out, "results/outbox"),
        Some(Value::Message(Message::new()))
    );
}

#[test]
fn all_mode() {
    let r = resolver();
    let state = msg! {
        "device" => "patch@1.0",
        "input" => msg! {
            "zones" => msg! {
                "1" => msg! {
                    "method" => "PATCH",
                    "prices" => msg! { "apple" => 100i64, "banana" => 200i64 },
                },
                "2" => msg! {
                    "method" => "GET",
                    "prices" => msg! { "orange" => 300i64 },
                },
            },
        },
        "state" => msg! { "prices" => msg! { "apple" => 1000i64 } },
    };
    let out = msg(resolve(
        &r,
        &state,
        msg! { "path" => "all", "patch-to" => "/state", "patch-from" => "/input/zones" },
    ));
    assert_eq!(get(&out, "state/1/prices/apple"), Some(Value::Integer(100)));
    assert_eq!(
        get(&out, "state/2/prices/orange"),
        Some(Value::Integer(300))
    );
    assert_eq!(get(&out, "input/zones"), None);
}

#[test]
fn req_prefix() {
    let r = resolver();
    let base = msg! {
        "device" => "patch@1.0",
        "state" => msg! { "prices" => msg! { "apple" => 1000i64 } },
    };
    let req = msg! {
        "path" => "all",
        "patch-from" => "req:/results/outbox/1",
        "patch-to" => "/state",
        "results" => msg! {
            "outbox" => msg! {
                "1" => msg! {
                    "method" => "PATCH",
                    "prices" => msg! { "apple" => 100i64, "banana" => 200i64 },
                },
            },
        },
    };
    let out = msg(resolve(&r, &base, req));
    assert_eq!(get(&out, "state/prices/apple"), Some(Value::Integer(100)));
    assert_eq!(get(&out, "state/prices/banana"), Some(Value::Integer(200)));
    assert_eq!(get(&out, "results/outbox/1"), None);
}

#[test]
fn hooks_are_identities_and_a_missing_source_is_not_found() {
    let r = resolver();
    let state = msg! { "device" => "patch@1.0", "patch-from" => "/results/outbox", "x" => "y" };
    for key in ["init", "normalize", "snapshot"] {
        assert_eq!(msg(resolve(&r, &state, msg! { "path" => key })), state);
    }
    assert!(matches!(
        resolve(&r, &state, msg! { "path" => "compute" }),
        Err(Error::NotFound(_))
    ));
    // A source that is not a message of messages is refused in patches mode.
    let bad = state.clone().with("results", msg! { "outbox" => "text" });
    assert!(matches!(
        resolve(&r, &bad, msg! { "path" => "compute" }),
        Err(Error::BadRequest(_))
    ));
    let bad = state.with("patch-from", 5i64);
    assert!(matches!(
        resolve(&r, &bad, msg! { "path" => "compute" }),
        Err(Error::BadRequest(_))
    ));
}

/// Stands in for an execution device: `compute` writes `results` from the request's `body`
/// (`data` and an `outbox` of the `send` messages), as json-iface does for aos.
#[derive(Debug)]
struct FakeExec;

impl Device for FakeExec {
    fn id(&self) -> &str {
        "fake-exec@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (key == "compute").then(|| -> BoxFuture<'a, Result<Value>> {
            Box::pin(async move {
                let body = req.get_message("body").cloned().unwrap_or_default();
                let outbox = body.get_message("send").cloned().unwrap_or_default();
                let results = msg! {
                    "data" => body.get_str("data").unwrap_or(""),
                    "outbox" => outbox,
                };
                Ok(Value::Message(base.clone().with("results", results)))
            })
        })
    }
}

#[test]
fn x_equals_banana_through_a_stack_and_read_by_path() {
    let store: Arc<dyn ao_core::Store> = Arc::new(ao_core::MemoryStore::new());
    let r = Resolver::builder(common::registry().register(FakeExec).build())
        .store(store.clone())
        .build();
    let state = msg! {
        "device" => "stack@1.0",
        "device-stack" => common::stack_of(&["fake-exec@1.0", "patch@1.0"]),
        "patch-from" => "/results/outbox",
    };
    // An execution whose outbox holds a PATCH (aos `Send({device='patch@1.0', x='banana'})`),
    // a patch to a nested cache, and an ordinary message.
    let req = msg! {
        "path" => "compute",
        "body" => msg! {
            "data" => "ok",
            "send" => msg! {
                "1" => msg! { "device" => "patch@1.0", "x" => "banana" },
                "2" => msg! { "method" => "PATCH", "cache" => msg! { "k" => "v" } },
                "3" => msg! { "target" => "someone", "data" => "hello" },
            },
        },
    };
    let out = msg(resolve(&r, &state, req));
    assert_eq!(out.get_str("x"), Some("banana"));
    assert_eq!(get(&out, "cache/k"), Some(Value::from("v")));
    assert_eq!(out.get_str("device"), Some("stack@1.0"));
    assert_eq!(
        get(&out, "results/outbox/3/data"),
        Some(Value::from("hello"))
    );
    assert_eq!(get(&out, "results/outbox/1"), None);

    // Stored, the state answers at GET paths.
    let id = ao_core::cache::write_message(store.as_ref(), &out).unwrap();
    let x = block_on(r.resolve_path(&format!("/{id}/x"))).unwrap();
    assert_eq!(x, Value::from("banana"));
    // A nested key is read as a plain message (a process state is read through process@1.0;
    // through stack@1.0 a message-valued key would become the fold's next state, as in
    // HyperBEAM).
    let k = block_on(r.resolve_path(&format!("/{id}~message@1.0/cache/k"))).unwrap();
    assert_eq!(k, Value::from("v"));

    // A later slot without patches leaves the patched state as it is.
    let again = msg(resolve(
        &r,
        &out,
        msg! { "path" => "compute", "body" => msg! { "data" => "next" } },
    ));
    assert_eq!(again.get_str("x"), Some("banana"));
    assert_eq!(get(&again, "results/data"), Some(Value::from("next")));
}
