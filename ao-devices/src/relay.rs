//! `relay@1.0`: messages to other nodes over HTTP (spec devices.md §3.3), and the outbound
//! request helpers other devices use (HyperBEAM's `hb_http:request`).
//!
//! * `call` — resolves a message on a peer and answers with the peer's result. The outbound
//!   message is the `target` sub-message of the request (default: the base); its path is the
//!   first of target `path`, request `relay-path`, base `relay-path`, base `path`; its method
//!   and body are `relay-method`/`relay-body` (request, then base), else the target's, the
//!   request's, the base's `method`/`body`. `requires-sign: true`
//!   has the node sign it. A relative path is routed with the node's routes
//!   ([`crate::router`]); an absolute `http(s)://` path is sent there.
//! * `cast` — the same, in the background; answers `"OK"` at once.
//! * `request` — the request hook (`on.request = {device: relay@1.0}`): rewrites every inbound
//!   request into a `call` of that request, turning the node into a forwarding proxy.
//!
//! The HTTP client itself lives with the server (`ao-http`); devices reach it through the
//! [`PeerClient`] trait, installed as the [`Client`] extension of the resolver.

use std::sync::Arc;
use std::time::Duration;

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Key, Message, Result, Value};

use crate::router::{self, Routed};

/// One outbound HTTP request: a message sent to a peer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outbound {
    /// `GET`, `POST`…
    pub method: String,
    /// The peer: `scheme://host[:port]`.
    pub peer: String,
    /// The request target on the peer: path and query.
    pub path: String,
    /// The message, encoded with its `codec-device` (default `httpsig@1.0`).
    pub message: Message,
    /// Sign the message with the node wallet before sending.
    pub sign: bool,
    /// Follow HTTP redirects (`location`) up to the client's limit. Off, a 3xx comes back as
    /// the reply (with `location`), for callers that handle redirects themselves.
    pub follow_redirects: bool,
    /// A tighter timeout than the client's default for this request.
    pub timeout: Option<Duration>,
    /// Headers sent beside the encoded message (not part of it, so not signed): e.g. the
    /// `accept` of a proxied request, or `result-depth` of a pushed one.
    pub headers: Vec<(String, String)>,
}

impl Outbound {
    /// A request of `method` for `path` on `peer`, carrying `message`.
    pub fn new(
        method: impl Into<String>,
        peer: impl Into<String>,
        path: impl Into<String>,
        message: Message,
    ) -> Self {
        Self {
            method: method.into(),
            peer: peer.into(),
            path: path.into(),
            message,
            sign: false,
            follow_redirects: true,
            timeout: None,
            headers: Vec::new(),
        }
    }

    /// A request to an absolute URL (`http://host:port/path?query`).
    pub fn to_url(method: impl Into<String>, url: &str, message: Message) -> Result<Self> {
        let (peer, path) = split_url(url)?;
        Ok(Self::new(method, peer, path, message))
    }

    /// Builder: sign before sending.
    #[must_use]
    pub fn signed(mut self, sign: bool) -> Self {
        self.sign = sign;
        self
    }

    /// Builder: whether to follow redirects.
    #[must_use]
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// Builder: a per-request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Builder: one more header beside the message.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A peer's reply, decoded (spec ao-core.md §7.4, client side).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// With an `ao-result` header, that key of the decoded message; else the decoded message
    /// with `status` set.
    pub value: Value,
}

impl Reply {
    /// A reply.
    pub fn new(status: u16, value: Value) -> Self {
        Self { status, value }
    }

    /// HyperBEAM's status class: `created` (201), `ok` (<400), `error` (<500), else `failure`.
    pub fn class(&self) -> &'static str {
        match self.status {
            201 => "created",
            s if s < 400 => "ok",
            s if s < 500 => "error",
            _ => "failure",
        }
    }

    /// Whether the peer answered with a success status.
    pub fn is_ok(&self) -> bool {
        self.status < 400
    }

    /// The reply as a resolution result: a message carries its `status` (which becomes the
    /// status of the local response), a bare value of a failed reply becomes an error.
    pub fn into_result(self) -> Result<Value> {
        match self.value {
            Value::Message(m) => Ok(Value::Message(m)),
            v if self.status < 400 => Ok(v),
            v => Err(Error::Status {
                status: self.status,
                body: v,
            }),
        }
    }
}

/// Why a request to a peer got no reply. Nothing local is lost: the caller gets a status.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer could not be reached (refused, reset, DNS…): 502.
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer did not answer in time: 504.
    #[error("peer {peer} did not answer within {after:?}")]
    Timeout {
        /// The peer.
        peer: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The peer answered something that is not a message: 502.
    #[error("peer {peer} sent a reply that cannot be decoded: {reason}")]
    BadReply {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The request cannot be sent as given (bad URL, unencodable message): 400.
    #[error("cannot send the request: {0}")]
    BadRequest(String),
    /// The node's options forbid requests to the peer's address (`http-blocked-addresses`):
    /// 403.
    #[error("requests to {peer} are not allowed: {reason}")]
    Forbidden {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
}

impl PeerError {
    /// The HTTP status a caller answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unreachable { .. } | Self::BadReply { .. } => 502,
            Self::Timeout { .. } => 504,
            Self::BadRequest(_) => 400,
            Self::Forbidden { .. } => 403,
        }
    }
}

impl From<PeerError> for Error {
    fn from(e: PeerError) -> Self {
        Error::status(e.status(), e.to_string())
    }
}

/// An HTTP client for peers. Implemented by the node's server crate; one per node, so
/// connections are reused.
pub trait PeerClient: Send + Sync + 'static {
    /// Sends one request and decodes the reply.
    fn send(&self, request: Outbound) -> BoxFuture<'_, std::result::Result<Reply, PeerError>>;

    /// Runs a task in the background (for `cast` and other fire-and-forget sends).
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// The resolver extension through which devices reach the node's [`PeerClient`].
#[derive(Clone)]
pub struct Client(Arc<dyn PeerClient>);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("relay::Client")
    }
}

impl Client {
    /// Wraps a client.
    pub fn new(client: Arc<dyn PeerClient>) -> Self {
        Self(client)
    }

    /// The client.
    pub fn inner(&self) -> &Arc<dyn PeerClient> {
        &self.0
    }

    /// The node's client, from a resolution context.
    pub fn of(ctx: &Context) -> Result<Arc<Self>> {
        ctx.extension::<Self>()
            .ok_or_else(|| Error::Internal("this node has no HTTP client".into()))
    }

    /// Sends one request.
    pub async fn send(&self, request: Outbound) -> std::result::Result<Reply, PeerError> {
        self.0.send(request).await
    }
}

/// Splits `scheme://host[:port]/path?query` into the peer and the request target.
pub fn split_url(url: &str) -> Result<(String, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| matches!(s.to_ascii_lowercase().as_str(), "http" | "https"))
        .ok_or_else(|| Error::BadRequest(format!("not an http(s) URL: {url:?}")))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(split);
    if host.is_empty() {
        return Err(Error::BadRequest(format!("no host in URL {url:?}")));
    }
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    Ok((format!("{}://{host}", scheme.to_ascii_lowercase()), path))
}

/// A process reference with a scheduler hint, as push targets and process IDs may carry
/// (`<pid>?hint=<url>` or `<pid>&hint=<url>`, spec devices.md §3.6, §3.13): the ID, and the
/// hinted URL if any.
pub fn split_hint(target: &str) -> (&str, Option<String>) {
    let Some(cut) = target.find(['?', '&']) else {
        return (target, None);
    };
    let (id, rest) = target.split_at(cut);
    let hint = rest[1..].split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "hint").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    });
    (id, hint)
}

/// Sends a message the way HyperBEAM's `hb_http:request/2` does: its `path` is routed with the
/// node's routes (an absolute URL goes where it says), its `method` (default `GET`) is the
/// HTTP method. A route with several nodes is a multi-request (`responses`, `stop-after`,
/// `accept-status`, `parallel`). `sign` has the node sign the message first.
pub async fn request(ctx: &Context, message: Message, sign: bool) -> Result<Reply> {
    let client = Client::of(ctx)?;
    let method = message.get_str("method").unwrap_or("GET").to_owned();
    let routes = router::load_routes(ctx);
    let routed = router::route(&message, &routes, &mut rand::thread_rng())?;
    let body = strip_meta(message);
    match routed {
        Routed::Url(url) => {
            let out = Outbound::to_url(method, &url, body)?.signed(sign);
            Ok(client.send(out).await?)
        }
        Routed::Nodes(route) => multirequest(&client, &route, &method, body, sign).await,
    }
}

/// The message without the keys that belong to the request line (`path`, `host`), unless it
/// is signed: then it goes as signed.
fn strip_meta(message: Message) -> Message {
    if message.is_committed() {
        message
    } else {
        message.without("path").without("host")
    }
}

fn node_uri(node: &Value) -> Option<String> {
    match node {
        Value::Binary(_) => node.as_str().map(str::to_owned),
        Value::Message(m) => m
            .get_str("uri")
            .or_else(|| m.get_str("prefix"))
            .map(str::to_owned),
        _ => None,
    }
}

fn allowed(status: u16, accept: &Value) -> bool {
    match accept {
        Value::Integer(i) => i64::from(status) == *i,
        Value::List(l) => l.iter().any(|v| v.as_integer() == Some(i64::from(status))),
        v => match v.as_str() {
            None | Some("All") => true,
            Some(list) => list
                .split(',')
                .any(|s| s.trim().parse::<u16>().ok() == Some(status)),
        },
    }
}

/// Sends the same request to the nodes of a route: serially by default, until `responses`
/// admissible replies (status < 400 and in `accept-status`) are in; in parallel with
/// `parallel: true`. One wanted response answers that response; several, the list.
async fn multirequest(
    client: &Client,
    route: &Message,
    method: &str,
    message: Message,
    sign: bool,
) -> Result<Reply> {
    let opt = |key: &str| {
        message
            .get(&format!("multirequest-{key}"))
            .or_else(|| route.get(key))
            .cloned()
    };
    let wanted = opt("responses")
        .and_then(|v| v.as_integer())
        .unwrap_or(1)
        .max(1) as usize;
    let accept = opt("accept-status").unwrap_or_else(|| Value::from("All"));
    let parallel = opt("parallel").is_some_and(|v| v.is_true());
    let nodes: Vec<String> = router::as_list(route.get("nodes"))
        .iter()
        .filter_map(node_uri)
        .collect();
    if nodes.is_empty() {
        return Err(Error::status(502, "the route has no nodes to send to"));
    }
    let mut got: Vec<Reply> = Vec::new();
    let mut last_failure: Option<std::result::Result<Reply, PeerError>> = None;
    let admissible = |r: &Reply| r.is_ok() && allowed(r.status, &accept);
    if parallel {
        use futures::StreamExt as _;
        let mut pending: futures::stream::FuturesUnordered<_> = nodes
            .iter()
            .map(|uri| {
                let out = Outbound::to_url(method, uri, message.clone()).map(|o| o.signed(sign));
                async move { client.send(out?).await.map_err(Error::from) }
            })
            .collect();
        while let Some(r) = pending.next().await {
            match r {
                Ok(reply) if admissible(&reply) => {
                    got.push(reply);
                    if got.len() >= wanted {
                        break;
                    }
                }
                Ok(reply) => last_failure = Some(Ok(reply)),
                Err(e) => last_failure = Some(Err(PeerError::BadRequest(e.to_string()))),
            }
        }
    } else {
        for uri in &nodes {
            let out = Outbound::to_url(method, uri, message.clone())?.signed(sign);
            match client.send(out).await {
                Ok(reply) if admissible(&reply) => {
                    got.push(reply);
                    if got.len() >= wanted {
                        break;
                    }
                }
                other => last_failure = Some(other),
            }
        }
    }
    match (got.len(), last_failure) {
        (0, Some(Ok(reply))) => Ok(reply),
        (0, Some(Err(e))) => Err(e.into()),
        (0, None) => Err(Error::status(502, "no viable responses")),
        (1, _) if wanted == 1 => Ok(got.remove(0)),
        _ => Ok(Reply::new(
            200,
            Value::List(got.into_iter().map(|r| r.value).collect()),
        )),
    }
}

/// The first present value of `(message, key)` pairs.
fn first_of(pairs: &[(&Message, &str)]) -> Option<Value> {
    pairs.iter().find_map(|(m, k)| m.get(k).cloned())
}

/// The outbound message of a `call`/`cast` (`dev_relay:call` steps 1–3), and whether the node
/// must sign it.
pub fn relay_message(base: &Message, request: &Message) -> Result<(Message, bool)> {
    let target_key = match request.get_str("target") {
        None | Some("self") => None,
        Some(key) => Some(key.to_owned()),
    };
    let target = match &target_key {
        None => base.clone(),
        Some(key) => match request.get(key).or_else(|| request.get("body")) {
            Some(Value::Message(m)) => m.clone(),
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "relay target {key:?} is a {}, not a message",
                    other.kind()
                )));
            }
            None => return Err(Error::NotFound(key.clone())),
        },
    };
    let path = first_of(&[
        (&target, "path"),
        (request, "relay-path"),
        (base, "relay-path"),
        (base, "path"),
    ])
    .ok_or_else(|| Error::BadRequest("relay: no path to relay to (relay-path)".into()))?;
    // Explicit `relay-*` keys win over the method and body the target inherited from the
    // inbound request (HyperBEAM looks at the target first, so `relay-method` cannot change
    // the method of a call whose target is its own base).
    let method = first_of(&[
        (request, "relay-method"),
        (base, "relay-method"),
        (&target, "method"),
        (request, "method"),
        (base, "method"),
    ]);
    // A target taken from the request (the forwarded original) carries its own body, or none.
    let body = match &target_key {
        None => first_of(&[
            (request, "relay-body"),
            (base, "relay-body"),
            (&target, "body"),
            (request, "body"),
        ]),
        Some(_) => first_of(&[(request, "relay-body"), (&target, "body")]),
    };
    let sign = target.get("requires-sign").is_some_and(Value::is_true);
    let mut out = target;
    // Relay steering keys are for this node, not the peer.
    for k in [
        "relay-path",
        "relay-method",
        "relay-body",
        "requires-sign",
        "target",
    ] {
        out.remove(k);
    }
    if out.get_str("device") == Some("relay@1.0") {
        out.remove("device");
    }
    out.insert("path", path);
    if let Some(m) = method {
        out.insert("method", m);
    }
    if let Some(b) = body {
        out.insert("body", b);
    }
    Ok((out, sign))
}

/// The `relay@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayDevice;

impl Device for RelayDevice {
    fn id(&self) -> &str {
        "relay@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["call", "cast", "request", "outbox"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        match key {
            "call" => Some(Box::pin(async move {
                let (msg, sign) = relay_message(base, request)?;
                self::request(ctx, msg, sign).await?.into_result()
            })),
            "cast" => Some(Box::pin(async move {
                let (msg, sign) = relay_message(base, request)?;
                let client = Client::of(ctx)?;
                let ctx = ctx.clone();
                client.inner().spawn(Box::pin(async move {
                    match self::request(&ctx, msg, sign).await {
                        Ok(r) if !r.is_ok() => {
                            tracing::warn!(status = r.status, "relay cast: the peer refused")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "relay cast failed"),
                    }
                }));
                Ok(Value::from("OK"))
            })),
            "request" => Some(Box::pin(async move { Ok(Value::Message(hook(request))) })),
            "outbox" => Some(Box::pin(async move {
                let store = ctx
                    .store()
                    .ok_or_else(|| Error::Internal("the outbox needs a store".into()))?;
                let (pending, delivered) = outbox::counts(store.as_ref())?;
                Ok(Value::Message(
                    Message::new()
                        .with("pending", pending as i64)
                        .with("delivered", delivered as i64),
                ))
            })),
            _ => None,
        }
    }
}

/// Keys of an inbound request that steer the local reply, kept on a rewritten request.
const REPLY_KEYS: [&str; 4] = ["accept", "accept-codec", "require-codec", "accept-bundle"];

/// The request hook's rewrite: the inbound singleton `request` becomes
/// `/~relay@1.0/call` with `target: body` and the original as `body` (HyperBEAM's
/// `[{device: relay@1.0}, {path: call, target: body, body: Request}]`, as one singleton).
pub fn forward(original: &Message) -> Message {
    let mut m = Message::new()
        .with("path", "/~relay@1.0/call")
        .with(
            "method",
            original.get("method").cloned().unwrap_or("GET".into()),
        )
        .with("target", "body")
        .with("body", Value::Message(original.clone()));
    for k in REPLY_KEYS {
        if let Some(v) = original.get(k) {
            m.insert(k, v.clone());
        }
    }
    let mut private = original.private_fields().clone();
    private.retain(|k: &Key, _| k.is_private());
    m.set_private_fields(private);
    m
}

/// `request` (the hook): `{request: Singleton}` → `{body: <relay call of Singleton>}`.
fn hook(hook_request: &Message) -> Message {
    let original = hook_request
        .get_message("request")
        .or_else(|| hook_request.get_message("body"))
        .cloned()
        .unwrap_or_default();
    Message::new().with("body", Value::Message(forward(&original)))
}

/// A durable outbox: messages that must reach a peer (pushes to remote processes) are kept in
/// the store until the peer takes them, and retried.
///
/// Layout: the envelope `{peer, relay-path, method, sign, message}` is written as a message;
/// `outbox/pending/<ms>-<n>` links to it (so children list in arrival order), and
/// `outbox/delivered/<ms>-<n>` records the status the peer answered once it took it. A peer
/// that answers below 500 (even a refusal: resending would not change it) has taken the
/// message; an unreachable, slow or failing (5xx) peer leaves it pending.
pub mod outbox {
    use std::sync::atomic::{AtomicU64, Ordering};

    use ao_core::store::{Op, Store};
    use ao_core::{Context, Error, Message, Result, Value, cache};

    use super::{Client, Outbound, PeerError, Reply};

    const PENDING: &str = "outbox/pending";
    const DELIVERED: &str = "outbox/delivered";

    /// Stores a request for later delivery; returns its outbox key.
    pub fn enqueue(store: &dyn Store, out: &Outbound) -> Result<String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let envelope = Message::new()
            .with("peer", out.peer.as_str())
            .with("relay-path", out.path.as_str())
            .with("method", out.method.as_str())
            .with("sign", Value::bool(out.sign))
            .with("message", Value::Message(out.message.clone()));
        let mut envelope = envelope;
        if !out.headers.is_empty() {
            let mut headers = Message::new();
            for (k, v) in &out.headers {
                headers.insert(k.to_ascii_lowercase(), v.as_str());
            }
            envelope.insert("headers", headers);
        }
        let id = cache::write_message(store, &envelope)?;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let key = format!(
            "{ms:020}-{:06}",
            SEQ.fetch_add(1, Ordering::Relaxed) % 1_000_000
        );
        store.apply(vec![Op::MakeLink {
            existing: id,
            new: format!("{PENDING}/{key}"),
        }])?;
        Ok(key)
    }

    /// The keys still waiting for their peer, oldest first.
    pub fn pending(store: &dyn Store) -> Result<Vec<String>> {
        let done = store.children(DELIVERED)?;
        let mut keys: Vec<String> = store
            .children(PENDING)?
            .into_iter()
            .filter(|k| !done.contains(k))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// `(pending, delivered)`.
    pub fn counts(store: &dyn Store) -> Result<(usize, usize)> {
        Ok((pending(store)?.len(), store.children(DELIVERED)?.len()))
    }

    fn load(store: &dyn Store, key: &str) -> Result<Outbound> {
        let env = cache::read_message(store, &format!("{PENDING}/{key}"))?
            .ok_or_else(|| Error::NotFound(format!("outbox entry {key}")))?;
        let text = |k: &str| {
            env.get_str(k)
                .map(str::to_owned)
                .ok_or_else(|| Error::Internal(format!("outbox entry {key} has no {k}")))
        };
        let message = env.get_message("message").cloned().unwrap_or_default();
        let mut out = Outbound::new(text("method")?, text("peer")?, text("relay-path")?, message)
            .signed(env.get("sign").is_some_and(Value::is_true));
        if let Some(headers) = env.get_message("headers") {
            for (k, v) in headers.iter() {
                if let Some(v) = v.as_str() {
                    out = out.header(k.as_str(), v);
                }
            }
        }
        Ok(out)
    }

    fn taken(reply: &Reply) -> bool {
        reply.status < 500
    }

    /// What one delivery round did.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct Round {
        /// Taken by their peers.
        pub delivered: usize,
        /// Still waiting.
        pub waiting: usize,
    }

    /// Tries every pending message once.
    pub async fn deliver_pending(ctx: &Context) -> Result<Round> {
        let store = ctx
            .store()
            .ok_or_else(|| Error::Internal("the outbox needs a store".into()))?
            .clone();
        let client = Client::of(ctx)?;
        let mut round = Round::default();
        for key in pending(store.as_ref())? {
            let out = load(store.as_ref(), &key)?;
            let status = match client.send(out).await {
                Ok(reply) if taken(&reply) => Some(reply.status.to_string()),
                Ok(_) => None,
                // Unsendable as stored: retrying cannot help.
                Err(e @ PeerError::BadRequest(_)) => Some(format!("unsendable: {e}")),
                Err(_) => None,
            };
            match status {
                Some(s) => {
                    store.write(&format!("{DELIVERED}/{key}"), s.into())?;
                    round.delivered += 1;
                }
                None => round.waiting += 1,
            }
        }
        Ok(round)
    }

    /// Sends a request; if the peer cannot take it now (unreachable, too slow, 5xx), keeps it
    /// in the outbox and answers 202 with its `outbox` key and the `peer-status` of the failed
    /// attempt (502 unreachable, 504 too slow, or the peer's 5xx).
    pub async fn send_durable(ctx: &Context, out: Outbound) -> Result<Reply> {
        let client = Client::of(ctx)?;
        let (why, peer_status) = match client.send(out.clone()).await {
            Ok(reply) if taken(&reply) => return Ok(reply),
            Ok(reply) => (format!("peer answered {}", reply.status), reply.status),
            Err(e @ PeerError::BadRequest(_)) => return Err(e.into()),
            Err(e) => (e.to_string(), e.status()),
        };
        let store = ctx
            .store()
            .ok_or_else(|| Error::Internal("the outbox needs a store".into()))?;
        let key = enqueue(store.as_ref(), &out)?;
        tracing::info!(%key, peer = %out.peer, reason = %why, "queued in the outbox");
        Ok(Reply::new(
            202,
            Value::Message(
                Message::new()
                    .with("status", 202i64)
                    .with("peer-status", i64::from(peer_status))
                    .with("outbox", key)
                    .with("body", format!("Queued for delivery: {why}")),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ao_core::msg;

    #[test]
    fn urls_split_into_peer_and_target() {
        assert_eq!(
            split_url("http://127.0.0.1:8734/~meta@1.0/info?x=1").unwrap(),
            (
                "http://127.0.0.1:8734".to_owned(),
                "/~meta@1.0/info?x=1".to_owned()
            )
        );
        assert_eq!(
            split_url("https://Example.com").unwrap(),
            ("https://Example.com".to_owned(), "/".to_owned())
        );
        assert_eq!(
            split_url("HTTP://h?a=b").unwrap(),
            ("http://h".to_owned(), "/?a=b".to_owned())
        );
        assert!(split_url("/relative").is_err());
        assert!(split_url("ftp://h/x").is_err());
    }

    #[test]
    fn call_takes_path_method_and_body_in_order() {
        let base = msg! { "device" => "relay@1.0", "relay-path" => "/base", "method" => "GET" };
        let req = msg! { "path" => "call", "relay-path" => "/req", "relay-method" => "POST" };
        let (out, sign) = relay_message(&base, &req).unwrap();
        // The target is the base: its own path is absent, the request's relay-path wins.
        assert_eq!(out.get_str("path"), Some("/req"));
        assert_eq!(out.get_str("method"), Some("POST"));
        assert!(!out.contains("relay-path"));
        assert!(!out.contains("device"));
        assert!(!sign);

        let original = msg! { "path" => "/~meta@1.0/info", "method" => "GET", "x" => "1" };
        let hooked = hook(&msg! { "request" => original });
        let fwd = hooked.get_message("body").unwrap();
        assert_eq!(fwd.get_str("path"), Some("/~relay@1.0/call"));
        let (out, _) = relay_message(
            &msg! { "device" => "relay@1.0" },
            &fwd.clone().with("path", "call"),
        )
        .unwrap();
        assert_eq!(out.get_str("path"), Some("/~meta@1.0/info"));
        assert_eq!(out.get_str("x"), Some("1"));
        assert_eq!(out.get_str("method"), Some("GET"));
    }

    #[test]
    fn hints() {
        let id = "CtOVB2dBtyN_vw3BdzCOrvcQvd9Y1oUGT-zLit8E3qM";
        assert_eq!(split_hint(id), (id, None));
        assert_eq!(
            split_hint(&format!("{id}?hint=http%3A%2F%2F127.0.0.1%3A1")),
            (id, Some("http://127.0.0.1:1".to_owned()))
        );
        assert_eq!(
            split_hint(&format!("{id}&x=1&hint=http://h:2")),
            (id, Some("http://h:2".to_owned()))
        );
        assert_eq!(split_hint(&format!("{id}&x=1")), (id, None));
    }

    #[test]
    fn status_classes_and_results() {
        assert_eq!(Reply::new(201, Value::from("x")).class(), "created");
        assert_eq!(Reply::new(302, Value::from("x")).class(), "ok");
        assert_eq!(Reply::new(404, Value::from("x")).class(), "error");
        assert_eq!(Reply::new(502, Value::from("x")).class(), "failure");
        let err = Reply::new(404, Value::from("gone"))
            .into_result()
            .unwrap_err();
        assert_eq!(err.http_status(), 404);
        let m = Reply::new(404, Value::Message(msg! { "status" => 404i64 }));
        assert!(m.into_result().is_ok());
        let e: Error = PeerError::Timeout {
            peer: "p".into(),
            after: Duration::from_secs(1),
        }
        .into();
        assert_eq!(e.http_status(), 504);
        assert!(allowed(200, &Value::from("All")));
        assert!(allowed(200, &Value::from("200, 201")));
        assert!(!allowed(404, &Value::from("200,201")));
    }
}

#[cfg(test)]
mod outbox_tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use ao_core::{DeviceRegistry, MemoryStore, Resolver, Store};

    use super::*;

    /// A peer that is down until `up` is set, then takes everything, recording what it got.
    #[derive(Default)]
    struct FlakyPeer {
        up: AtomicBool,
        got: Mutex<Vec<(String, String, Message)>>,
    }

    impl PeerClient for FlakyPeer {
        fn send(&self, r: Outbound) -> BoxFuture<'_, std::result::Result<Reply, PeerError>> {
            Box::pin(async move {
                if !self.up.load(Ordering::SeqCst) {
                    return Err(PeerError::Unreachable {
                        peer: r.peer,
                        reason: "down".into(),
                    });
                }
                self.got
                    .lock()
                    .unwrap()
                    .push((r.peer, r.path, r.message.clone()));
                Ok(Reply::new(200, Value::from("ok")))
            })
        }
        fn spawn(&self, _task: BoxFuture<'static, ()>) {}
    }

    #[test]
    fn undeliverable_messages_wait_in_the_store_and_are_retried() {
        let store = Arc::new(MemoryStore::new());
        let peer = Arc::new(FlakyPeer::default());
        let resolver = Resolver::builder(DeviceRegistry::builder().build())
            .store(store.clone() as Arc<dyn Store>)
            .extension(Arc::new(Client::new(peer.clone())))
            .build();
        let ctx = resolver.context();
        let out = |n: i64| {
            Outbound::new(
                "POST",
                "http://127.0.0.1:9",
                "/x/schedule",
                ao_core::msg! { "n" => n },
            )
        };
        futures::executor::block_on(async {
            for n in 0..3 {
                let r = outbox::send_durable(&ctx, out(n)).await.unwrap();
                assert_eq!(r.status, 202);
            }
            assert_eq!(outbox::counts(store.as_ref()).unwrap(), (3, 0));
            // Still down: nothing is lost, nothing delivered.
            let round = outbox::deliver_pending(&ctx).await.unwrap();
            assert_eq!(
                round,
                outbox::Round {
                    delivered: 0,
                    waiting: 3
                }
            );
            peer.up.store(true, Ordering::SeqCst);
            let round = outbox::deliver_pending(&ctx).await.unwrap();
            assert_eq!(
                round,
                outbox::Round {
                    delivered: 3,
                    waiting: 0
                }
            );
            assert_eq!(outbox::counts(store.as_ref()).unwrap(), (0, 3));
            // Delivered once, in order.
            let got = peer.got.lock().unwrap().clone();
            let ns: Vec<i64> = got
                .iter()
                .map(|(_, _, m)| m.get("n").and_then(Value::as_integer).unwrap())
                .collect();
            assert_eq!(ns, vec![0, 1, 2]);
            assert!(
                got.iter()
                    .all(|(p, path, _)| p == "http://127.0.0.1:9" && path == "/x/schedule")
            );
            assert_eq!(outbox::deliver_pending(&ctx).await.unwrap().delivered, 0);
            // Up: sent at once, not queued.
            assert_eq!(
                outbox::send_durable(&ctx, out(9)).await.unwrap().status,
                200
            );
        });
    }
}
