//! Test devices shared by the stack, dedup, patch and push tests (HyperBEAM's inline test
//! devices, registered by name).

#![allow(dead_code, reason = "each test crate uses a part of this module")]
#![allow(unreachable_pub, reason = "test helper module")]

use std::sync::Arc;

use ao_core::{
    BoxFuture, Context, Device, DeviceRegistryBuilder, Error, MemoryStore, Message, Resolver,
    Result, Store, Value,
};

/// The status an append device ends its call with.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    Ok,
    Skip,
    Pass,
}

/// HyperBEAM's `generate_append_device`: `append` appends `<sep><bin>` to `result`, except on
/// pass 3, where it answers the base unchanged. `special` (when enabled) sets `output: 1337`.
#[derive(Debug)]
pub struct Append {
    pub name: String,
    pub sep: String,
    pub status: Status,
    pub special: bool,
}

impl Append {
    pub fn new(name: &str, sep: &str, status: Status) -> Self {
        Self {
            name: name.to_owned(),
            sep: sep.to_owned(),
            status,
            special: false,
        }
    }
}

impl Device for Append {
    fn id(&self) -> &str {
        &self.name
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out = match key {
            "append" => {
                if base.get("pass") == Some(&Value::Integer(3)) {
                    return Some(Box::pin(async move { Ok(Value::Message(base.clone())) }));
                }
                let existing = base.get_str("result").unwrap_or("").to_owned();
                let new = req.get_str("bin").unwrap_or("").to_owned();
                let next = base
                    .clone()
                    .with("result", format!("{existing}{}{new}", self.sep));
                match self.status {
                    Status::Ok => Ok(Value::Message(next)),
                    Status::Skip => Err(Error::skip(next)),
                    Status::Pass => Err(Error::pass(next)),
                }
            }
            "special" if self.special => Ok(Value::Message(base.clone().with("output", 1337i64))),
            _ => return None,
        };
        Some(Box::pin(async move { out }))
    }
}

fn parts(path: &str) -> Vec<&str> {
    path.split('/').filter(|p| !p.is_empty()).collect()
}

fn get_in<'m>(msg: &'m Message, path: &str) -> Option<&'m Value> {
    let mut cur: Option<&Value> = None;
    for (i, p) in parts(path).into_iter().enumerate() {
        cur = if i == 0 {
            msg.get(p)
        } else {
            cur?.as_message()?.get(p)
        };
    }
    cur
}

/// HyperBEAM's `test_prefix_msg` device: `prefix_set` copies request `<in>/<key>` to
/// `<out>/<key>` in the base, with the member's input and output prefixes.
#[derive(Debug)]
pub struct PrefixSet;

impl Device for PrefixSet {
    fn id(&self) -> &str {
        "prefix-set@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (key == "prefix_set").then(|| -> BoxFuture<'a, Result<Value>> {
            Box::pin(async move {
                let input = ao_devices::stack::input_prefix(base);
                let output = ao_devices::stack::output_prefix(base);
                let k = req.get_str("key").unwrap_or("");
                let v = get_in(req, &format!("{input}/{k}"))
                    .cloned()
                    .ok_or_else(|| Error::NotFound(k.to_owned()))?;
                let target = parts(&format!("{output}/{k}")).join("/");
                ao_core::message_device::set(base, &Message::new().with(target.as_str(), v))
                    .map(Value::Message)
            })
        })
    }
}

/// HyperBEAM's `make-cool` device: every key `K` but `keys` sets `K` to `<K's value>-Cool`.
#[derive(Debug)]
pub struct Cool;

impl Device for Cool {
    fn id(&self) -> &str {
        "cool@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (key != "keys").then(|| -> BoxFuture<'a, Result<Value>> {
            Box::pin(async move {
                let v = base
                    .get_str(key)
                    .ok_or_else(|| Error::NotFound(key.to_owned()))?;
                Ok(Value::Message(base.clone().with(key, format!("{v}-Cool"))))
            })
        })
    }
}

/// Fails every key with a 400.
#[derive(Debug)]
pub struct Fail;

impl Device for Fail {
    fn id(&self) -> &str {
        "fail@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        _: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (key != "keys").then(|| -> BoxFuture<'a, Result<Value>> {
            Box::pin(async move { Err(Error::BadRequest(format!("fail@1.0 refuses {key}"))) })
        })
    }
}

/// Always answers `pass`.
#[derive(Debug)]
pub struct AlwaysPass;

impl Device for AlwaysPass {
    fn id(&self) -> &str {
        "always-pass@1.0"
    }
    fn call<'a>(
        &'a self,
        _: &'a str,
        base: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        Some(Box::pin(async move { Err(Error::pass(base.clone())) }))
    }
}

/// The built-in devices plus the test devices above.
pub fn registry() -> DeviceRegistryBuilder {
    let mut b = ao_devices::builtin()
        .register(PrefixSet)
        .register(Cool)
        .register(Fail)
        .register(AlwaysPass);
    for i in 1..=8 {
        b = b.register(Append::new(
            &format!("append-d{i}@1.0"),
            &format!("+D{i}"),
            Status::Ok,
        ));
    }
    b.register(Append::new("append-bang@1.0", "!D1!", Status::Ok))
        .register(Append::new("append-under@1.0", "_D2_", Status::Ok))
        .register(Append::new("append-skip@1.0", "+D1", Status::Skip))
        .register(Append::new("append-pass@1.0", "+D1", Status::Pass))
        .register(Append {
            special: true,
            ..Append::new("append-special@1.0", "+D2", Status::Ok)
        })
}

/// A resolver over [`registry`] and a fresh in-memory store.
pub fn resolver() -> (Resolver, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let r = Resolver::builder(registry().build())
        .store(store.clone())
        .build();
    (r, store)
}

/// Resolves a request built from pairs.
pub fn resolve(r: &Resolver, base: &Message, req: Message) -> Result<Value> {
    futures::executor::block_on(r.resolve(base.clone(), req))
}

/// A `device-stack` message from names.
pub fn stack_of(names: &[&str]) -> Message {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| ((i + 1).to_string(), Value::from(*n)))
        .collect()
}

/// A message result, or a panic naming what came back.
pub fn msg(v: Result<Value>) -> Message {
    match v {
        Ok(Value::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}
