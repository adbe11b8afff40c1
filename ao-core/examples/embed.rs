//! Embedding `ao-core`: a registry with one custom device, an in-memory store, and one
//! HyperPATH resolved against them.
//!
//! Run with `cargo run -p ao-core --example embed`.

use std::sync::Arc;

use ao_core::{
    BoxFuture, Context, Device, DeviceRegistry, MemoryStore, Message, Resolver, Result, Value,
    cache, msg,
};

/// `greeter@1.0`: `hello` greets the message's `name`; other keys are the stored values.
struct Greeter;

impl Device for Greeter {
    fn id(&self) -> &str {
        "greeter@1.0"
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        match key {
            "hello" => Some(Box::pin(async move {
                let name = base.get_str("name").unwrap_or("world");
                let punctuation = request.get_str("punctuation").unwrap_or("!");
                Ok(Value::Message(
                    msg! { "greeting" => format!("Hello, {name}{punctuation}") },
                ))
            })),
            _ => None,
        }
    }
}

fn main() -> Result<()> {
    let registry = DeviceRegistry::builder().register(Greeter).build();
    let store = Arc::new(MemoryStore::new());
    let resolver = Resolver::builder(registry).store(store.clone()).build();

    // Store a message; it is addressed by its ID.
    let id = cache::write_message(
        store.as_ref(),
        &msg! { "device" => "greeter@1.0", "name" => "AO" },
    )?;

    // Resolve `hello` on it, then read `greeting` of the result.
    let path = format!("/{id}/hello&punctuation=%3F/greeting");
    let result = futures::executor::block_on(resolver.resolve_path(&path))?;
    println!("{path} => {result:?}");

    // Stop one step earlier to see the message and the hashpath that proves how it was reached.
    let path = format!("/{id}/hello");
    let Value::Message(greeting) = futures::executor::block_on(resolver.resolve_path(&path))?
    else {
        unreachable!("hello returns a message");
    };
    println!("{path} => {greeting:?}");
    println!("hashpath: {}", greeting.hashpath().unwrap_or_default());
    assert_eq!(result, Value::from("Hello, AO?"));
    Ok(())
}
