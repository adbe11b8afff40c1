//! `meta@1.0`: the node message (spec devices.md §3.2, ao-core.md §9.5).
//!
//! * `GET /~meta@1.0/info` — the node's options without private keys, plus `address`;
//!   `/~meta@1.0/info/address` is the address as plain text.
//! * `POST /~meta@1.0/info` — merges the request's keys into the options; accepted only when the
//!   request is signed by the operator (or by anyone while `operator` is `unclaimed`), refused
//!   when `initialized` is `permanent`. Each accepted update is appended to the node history.
//!   The node's own signature authorizes nothing (see [`NodeState::authorizers`]), so with no
//!   `operator` option (the operator is then the node's address) updates are refused.
//! * `build` — what this node is: name, version, source.

use std::sync::{Arc, RwLock};

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value};

/// Keys of a request that never become node options.
const NOT_OPTIONS: [&str; 8] = [
    "commitments",
    "path",
    "method",
    "signature",
    "signature-input",
    "host",
    "content-length",
    "user-agent",
];

/// Checks that a request was signed by a given address; provided by the node (it needs the
/// signature-verification code and the node's verification policy).
pub type SignerCheck = dyn Fn(&Message, &str) -> Result<bool> + Send + Sync;

/// The node message and its history, shared by `meta@1.0` and the HTTP layer.
pub struct NodeState {
    options: RwLock<Message>,
    history: RwLock<Vec<Message>>,
    address: String,
    signer_check: Option<Box<SignerCheck>>,
    listen_url: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl NodeState {
    /// A node's state: its options (the node message) and its wallet address.
    pub fn new(options: Message, address: impl Into<String>) -> Self {
        Self {
            options: RwLock::new(options),
            history: RwLock::new(Vec::new()),
            address: address.into(),
            signer_check: None,
            listen_url: std::sync::OnceLock::new(),
        }
    }

    /// Records the URL the node's server listens on, once it is bound (the port may have been
    /// picked by the system).
    pub fn set_listen_url(&self, url: impl Into<String>) {
        let _ = self.listen_url.set(url.into());
    }

    /// The URL the node's server listens on, once known.
    pub fn listen_url(&self) -> Option<&str> {
        self.listen_url.get().map(String::as_str)
    }

    /// Sets how operator signatures are checked (without one, `POST info` is refused unless the
    /// node is `unclaimed`).
    #[must_use]
    pub fn with_signer_check(mut self, check: Box<SignerCheck>) -> Self {
        self.signer_check = Some(check);
        self
    }

    /// The node's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A snapshot of the options.
    pub fn options(&self) -> Message {
        self.options.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// The operator address: the `operator` option, else the node's address.
    pub fn operator(&self) -> String {
        self.options()
            .get_str("operator")
            .map(str::to_owned)
            .unwrap_or_else(|| self.address.clone())
    }

    /// The addresses among `addresses` whose signature may authorize a request (as the operator,
    /// a route owner, a cache writer…): all but this node's own.
    ///
    /// The node signs content that others choose: every reply (`force-signed`), `commit`
    /// results when allowed, the outbox messages of the processes it runs. A request carrying
    /// its signature therefore says nothing about who sent it, and replaying such a signature
    /// must not let anyone act as the node's operator. (HyperBEAM accepts the node wallet as the
    /// operator when no `operator` is set; an operator who administers the node over HTTP sets
    /// `operator` to a wallet of their own.)
    pub fn authorizers(&self, addresses: Vec<String>) -> Vec<String> {
        addresses
            .into_iter()
            .filter(|a| *a != self.address)
            .collect()
    }

    /// The accepted updates, oldest first.
    pub fn history(&self) -> Vec<Message> {
        self.history.read().map(|h| h.clone()).unwrap_or_default()
    }

    /// The public node message: options without private keys, plus `address`.
    pub fn info(&self) -> Message {
        let mut m = self.options();
        m.insert("address", self.address.as_str());
        if !m.contains("operator") {
            m.insert("operator", self.address.as_str());
        }
        m
    }

    /// Applies an operator update (`POST /~meta@1.0/info`).
    pub fn update(&self, request: &Message) -> Result<Message> {
        let options = self.options();
        if options.get_str("initialized") == Some("permanent")
            || matches!(options.get("initialized"), Some(Value::Atom(a)) if a.as_str() == "permanent")
        {
            return Err(Error::status(
                403,
                "The node message of this node is permanent.",
            ));
        }
        let operator = self.operator();
        if operator == self.address {
            return Err(Error::status(
                403,
                "Unauthorized: this node's operator is its own wallet, whose signature \
                 authorizes no request (the node signs replies and messages others choose); \
                 set the `operator` option to the operator's wallet address.",
            ));
        }
        if operator != "unclaimed" {
            let signed = match &self.signer_check {
                Some(check) => check(request, &operator)?,
                None => false,
            };
            if !signed {
                return Err(Error::status(
                    403,
                    "Unauthorized: the request must be signed by the node's operator.",
                ));
            }
        }
        let mut updated = options;
        for (k, v) in request.iter() {
            if NOT_OPTIONS.contains(&k.as_str()) {
                continue;
            }
            updated.insert(k.clone(), v.clone());
        }
        *self
            .options
            .write()
            .map_err(|_| Error::Internal("node options lock poisoned".into()))? = updated.clone();
        if let Ok(mut h) = self.history.write() {
            h.push(request.clone());
        }
        Ok(updated)
    }
}

/// The `meta@1.0` device. The node state comes from the resolver's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaDevice;

impl Device for MetaDevice {
    fn id(&self) -> &str {
        "meta@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["info", "build"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        _base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out = match key {
            "info" => info(request, ctx),
            "build" => Ok(Value::Message(build())),
            _ => return None,
        };
        Some(Box::pin(async move { out }))
    }
}

fn info(request: &Message, ctx: &Context) -> Result<Value> {
    let state: Arc<NodeState> = ctx
        .extension::<NodeState>()
        .ok_or_else(|| Error::Internal("meta@1.0 needs the node state".into()))?;
    let method = request.get_str("method").unwrap_or("GET");
    if method.eq_ignore_ascii_case("POST") {
        state.update(request)?;
        return Ok(Value::Message(
            Message::new().with("status", 200i64).with("body", "OK"),
        ));
    }
    Ok(Value::Message(state.info()))
}

/// The node's build information.
pub fn build() -> Message {
    Message::new()
        .with("node", "ao-node")
        .with("version", env!("CARGO_PKG_VERSION"))
        .with("source", env!("CARGO_PKG_REPOSITORY"))
        .with("protocol", "ao-core")
}
