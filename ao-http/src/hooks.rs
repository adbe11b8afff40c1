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
