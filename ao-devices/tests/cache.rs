//! `cache@1.0` and `lookup@1.0`: HyperBEAM's `dev_lookup` tests, ported, and trusted writes.

mod common;

use std::sync::Arc;

use ao_core::wallet::Wallet;
use ao_core::{Error, MemoryStore, Message, Resolver, Result, Store, Value, msg};
use ao_devices::meta::NodeState;
use futures::executor::block_on;

const WALLETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/wallets");

fn wallet(name: &str) -> Wallet {
    Wallet::load(&std::path::Path::new(WALLETS).join(name)).expect("fixture wallet")
}

fn node(writers: &[&str]) -> (Resolver, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options = msg! {
        "cache_writers" => Value::List(writers.iter().map(|w| Value::from(*w)).collect()),
    };
    let state = NodeState::new(options, "node-address");
    let r = Resolver::builder(ao_devices::builtin().build())
        .store(store.clone())
        .extension(Arc::new(state))
        .build();
    (r, store)
}

fn on(r: &Resolver, device: &str, req: Message) -> Result<Value> {
    block_on(r.resolve(msg! { "device" => device }, req))
}

#[test]
fn binary_lookup() {
    let (r, store) = node(&[]);
    let bin = "Simple unsigned data item";
    let path = ao_core::cache::write_binary(store.as_ref(), bin.into()).unwrap();
    for device in ["lookup@1.0", "cache@1.0"] {
        let v = on(
            &r,
            device,
            msg! { "path" => "read", "target" => path.as_str() },
        )
        .unwrap();
        assert_eq!(v, Value::from(bin));
    }
}

#[test]
fn message_lookup() {
    let (r, store) = node(&[]);
    let m = msg! { "test-key" => "test-value", "data" => "test-data" };
    let id = ao_core::cache::write_message(store.as_ref(), &m).unwrap();
    let v = on(
        &r,
        "lookup@1.0",
        msg! { "path" => "read", "target" => id.as_str() },
    )
    .unwrap();
    assert_eq!(v, Value::Message(m));
    // Deep paths read one key, and the same works from a HyperPATH.
    let v = block_on(r.resolve_path(&format!("/~cache@1.0/read?target={id}/data"))).unwrap();
    assert_eq!(v, Value::from("test-data"));
}

/// Groups that are indexes of the store (they grow with it) are not read whole; messages,
/// also through links, are.
#[test]
fn index_groups_are_not_read_whole() {
    let (r, store) = node(&[]);
    let m = msg! { "k" => "v" };
    let id = ao_core::cache::write_message(store.as_ref(), &m).unwrap();
    store.make_link(&id, "computed/p/slot/1").unwrap();
    for target in ["data", "computed", "computed/p", "computed/p/slot"] {
        for device in ["lookup@1.0", "cache@1.0"] {
            match on(&r, device, msg! { "path" => "read", "target" => target }) {
                Err(Error::BadRequest(reason)) => assert!(reason.contains("index"), "{reason}"),
                other => panic!("{device} {target}: {other:?}"),
            }
        }
    }
    for target in [id.as_str(), "computed/p/slot/1"] {
        let v = on(
            &r,
            "cache@1.0",
            msg! { "path" => "read", "target" => target },
        )
        .unwrap();
        assert_eq!(v, Value::Message(m.clone()), "{target}");
    }
    let k = on(
        &r,
        "cache@1.0",
        msg! { "path" => "read", "target" => "computed/p/slot/1/k" },
    )
    .unwrap();
    assert_eq!(k, Value::from("v"));
}

#[test]
fn lookup_errors() {
    let (r, _) = node(&[]);
    let missing = "m".repeat(43);
    assert!(matches!(
        on(
            &r,
            "lookup@1.0",
            msg! { "path" => "read", "target" => missing.as_str() }
        ),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        on(&r, "lookup@1.0", msg! { "path" => "read" }),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        on(
            &r,
            "lookup@1.0",
            msg! { "path" => "read", "target" => "x", "accept" => "application/aos-2" }
        ),
        Err(Error::Status { status: 406, .. })
    ));
    // lookup@1.0 only reads.
    assert!(matches!(
        on(&r, "lookup@1.0", msg! { "path" => "write", "body" => "x" }),
        Err(Error::NotFound(_))
    ));
}

fn signed(w: &Wallet, req: Message) -> Message {
    ao_core::signature::commit(&req, w).unwrap()
}

#[test]
fn trusted_writers_write_and_link() {
    let writer = wallet("key-2.json");
    let (r, _) = node(&[writer.address_string().as_str()]);

    // A binary goes to its content address.
    let out = on(
        &r,
        "cache@1.0",
        signed(&writer, msg! { "path" => "write", "body" => "hello" }),
    )
    .unwrap();
    let out = out.as_message().unwrap().clone();
    assert_eq!(out.get("status"), Some(&Value::Integer(200)));
    let path = out.get_str("path").unwrap().to_owned();
    assert!(path.starts_with("data/"));
    let v = on(
        &r,
        "cache@1.0",
        msg! { "path" => "read", "target" => path.as_str() },
    )
    .unwrap();
    assert_eq!(v, Value::from("hello"));

    // A message goes to its ID, and is also linked at `location`.
    let m = msg! { "a" => "b" };
    let out = on(
        &r,
        "cache@1.0",
        signed(
            &writer,
            msg! { "path" => "write", "body" => m.clone(), "location" => "named/thing" },
        ),
    )
    .unwrap();
    let id = out
        .as_message()
        .unwrap()
        .get_str("path")
        .unwrap()
        .to_owned();
    for target in [id.as_str(), "named/thing"] {
        let v = on(
            &r,
            "cache@1.0",
            msg! { "path" => "read", "target" => target },
        )
        .unwrap();
        assert_eq!(v, Value::Message(m.clone()));
    }

    // Links.
    on(
        &r,
        "cache@1.0",
        signed(
            &writer,
            msg! { "path" => "link", "source" => id.as_str(), "destination" => "alias" },
        ),
    )
    .unwrap();
    let v = on(
        &r,
        "cache@1.0",
        msg! { "path" => "read", "target" => "alias/a" },
    )
    .unwrap();
    assert_eq!(v, Value::from("b"));

    // Batches answer per item.
    let out = on(
        &r,
        "cache@1.0",
        signed(
            &writer,
            msg! {
                "path" => "write",
                "type" => "batch",
                "body" => msg! { "x" => msg! { "body" => "one" }, "y" => "two" },
            },
        ),
    )
    .unwrap();
    let out = out.as_message().unwrap();
    for k in ["x", "y"] {
        let p = out.get_message(k).unwrap().get_str("path").unwrap();
        assert!(p.starts_with("data/"));
    }

    // A signer the HTTP layer verified is trusted too.
    let mut req = msg! { "path" => "write", "body" => "via http" };
    req.insert(
        ao_devices::cache::VERIFIED_SIGNERS,
        Value::List(vec![writer.address_string().into()]),
    );
    assert!(on(&r, "cache@1.0", req).is_ok());
}

#[test]
fn untrusted_and_malformed_writes_are_refused() {
    let writer = wallet("key-2.json");
    let other = wallet("key-1.json");
    let (r, _) = node(&[writer.address_string().as_str()]);
    let forbidden = |req: Message| {
        matches!(
            on(&r, "cache@1.0", req),
            Err(Error::Status { status: 403, .. })
        )
    };
    assert!(forbidden(msg! { "path" => "write", "body" => "x" }));
    assert!(forbidden(signed(
        &other,
        msg! { "path" => "write", "body" => "x" }
    )));
    assert!(forbidden(signed(
        &other,
        msg! { "path" => "link", "source" => "a", "destination" => "b" }
    )));
    // A commitment that claims the writer but does not verify.
    let mut forged = signed(&writer, msg! { "path" => "write", "body" => "x" });
    forged.insert("body", "y");
    assert!(forbidden(forged));
    // No node state at all: nobody writes.
    let bare = Resolver::builder(ao_devices::builtin().build())
        .store(Arc::new(MemoryStore::new()))
        .build();
    assert!(matches!(
        block_on(bare.resolve(
            msg! { "device" => "cache@1.0" },
            signed(&writer, msg! { "path" => "write", "body" => "x" })
        )),
        Err(Error::Status { status: 403, .. })
    ));

    let bad = |req: Message| {
        matches!(
            on(&r, "cache@1.0", signed(&writer, req)),
            Err(Error::Status { status: 400, .. })
        )
    };
    assert!(bad(msg! { "path" => "write" }));
    assert!(bad(
        msg! { "path" => "write", "type" => "many", "body" => "x" }
    ));
    assert!(bad(
        msg! { "path" => "write", "operation" => "smash", "body" => "x" }
    ));
    assert!(bad(msg! { "path" => "write", "body" => 5i64 }));
}
