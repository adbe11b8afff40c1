//! Hook points around each request (HyperBEAM's `on.request` / `on.response`, spec §9.4).
//!
//! Hooks run in order; each may rewrite what it is given or stop the request with an error.
//! The chain is empty by default; payments, routing and other policies plug in here.

use ao_core::device::BoxFuture;
use ao_core::{Message, Result, Value};

/// A request/response hook.
pub trait Hook: Send + Sync + 'static {
    /// Called with the singleton request before resolution; returns the (possibly rewritten)
    /// request.
    fn on_request<'a>(&'a self, request: Message) -> BoxFuture<'a, Result<Message>> {
        Box::pin(async move { Ok(request) })
    }

    /// Called with the request and the result before it is encoded; returns the (possibly
    /// rewritten) result.
    fn on_response<'a>(
        &'a self,
        _request: &'a Message,
        result: Value,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move { Ok(result) })
    }
}

/// An ordered chain of hooks.
#[derive(Default)]
pub struct Hooks {
    chain: Vec<Box<dyn Hook>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("len", &self.chain.len())
            .finish()
    }
}

impl Hooks {
    /// Appends a hook.
    pub fn push(&mut self, hook: impl Hook) {
        self.chain.push(Box::new(hook));
    }

    /// Runs the request hooks in order.
    pub async fn request(&self, mut request: Message) -> Result<Message> {
        for h in &self.chain {
            request = h.on_request(request).await?;
        }
        Ok(request)
    }

    /// Runs the response hooks in order.
    pub async fn response(&self, request: &Message, mut result: Value) -> Result<Value> {
        for h in &self.chain {
            result = h.on_response(request, result).await?;
        }
        Ok(result)
    }
}

/// A hook run by a device, as HyperBEAM's node option `on` configures them (spec devices.md
/// §3.24): the handler message (e.g. `{device: router@1.0, path: preprocess}`) is resolved with
/// `path` = its own `path`, else the hook name, and the request
/// `{request: <singleton>, body: <singleton or result>}`. The result's `body` replaces what the
/// hook was given; an error stops the request with its status.
///
/// HyperBEAM hands request hooks the parsed message list; here the singleton is the request's
/// form, so request hooks answer a rewritten singleton (`relay@1.0`'s `request` and
/// `router@1.0`'s `preprocess` do).
pub struct DeviceHook {
    name: &'static str,
    handler: Message,
    resolver: ao_core::Resolver,
}

impl std::fmt::Debug for DeviceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHook")
            .field("name", &self.name)
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

impl DeviceHook {
    /// A `request` or `response` hook resolved through `handler`.
    pub fn new(name: &'static str, handler: Message, resolver: ao_core::Resolver) -> Self {
        Self {
            name,
            handler,
            resolver,
        }
    }

    async fn run(&self, request: &Message, body: Value) -> Result<Value> {
        let path = self.handler.get_str("path").unwrap_or(self.name).to_owned();
        let base = self.handler.clone().without("path");
        let mut req = Message::new()
            .with("path", path)
            .with("method", "GET")
            .with("request", Value::Message(request.clone()))
            .with("body", body);
        req.set_private_fields(request.private_fields().clone());
        match self.resolver.resolve(base, req).await? {
            Value::Message(m) => m.get("body").cloned().ok_or_else(|| {
                ao_core::Error::Internal(format!("the {} hook answered no body", self.name))
            }),
            other => Err(ao_core::Error::Internal(format!(
                "the {} hook answered a {}, not a message",
                self.name,
                other.kind()
            ))),
        }
    }
}

impl Hook for DeviceHook {
    fn on_request<'a>(&'a self, request: Message) -> BoxFuture<'a, Result<Message>> {
        Box::pin(async move {
            if self.name != "request" {
                return Ok(request);
            }
            match self.run(&request, Value::Message(request.clone())).await? {
                Value::Message(mut m) => {
                    // The signers verified at the door stay with the rewritten request.
                    let mut private = request.private_fields().clone();
                    private.extend(m.private_fields().clone());
                    m.set_private_fields(private);
                    Ok(m)
                }
                other => Err(ao_core::Error::Internal(format!(
                    "the request hook answered a {}, not a request message",
                    other.kind()
                ))),
            }
        })
    }

    fn on_response<'a>(
        &'a self,
        request: &'a Message,
        result: Value,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            if self.name != "response" {
                return Ok(result);
            }
            self.run(request, result).await
        })
    }
}

/// The hooks of the node option `on` (`{request: Handler | [Handler…], response: …}`), in
/// order: every `request` handler, then every `response` handler.
pub fn from_options(options: &Message, resolver: &ao_core::Resolver) -> Hooks {
    let mut hooks = Hooks::default();
    let Some(on) = options.get_message("on") else {
        return hooks;
    };
    for name in ["request", "response"] {
        let handlers: Vec<Message> = match on.get(name) {
            Some(Value::Message(m)) if m.contains("device") || m.contains("path") => {
                vec![m.clone()]
            }
            other => ao_devices::router::as_list(other)
                .iter()
                .filter_map(|v| v.as_message().cloned())
                .collect(),
        };
        for h in handlers {
            hooks.push(DeviceHook::new(name, h, resolver.clone()));
        }
    }
    hooks
}

impl Hooks {
    /// How many hooks the chain holds.
    pub fn len(&self) -> usize {
        self.chain.len()
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }
}
