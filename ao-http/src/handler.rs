//! The request pipeline, independent of the server: HTTP request → singleton message
//! (spec §7.1) → hooks → resolution → result message (§7.3) → encoded response (§7.4).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ao_core::codec::httpsig::HttpMessage;
use ao_core::codec::{self, structured};
use ao_core::signature::RequestLine;
use ao_core::{Key, Message, Resolver, Value};
use ao_devices::meta::NodeState;
use bytes::Bytes;

use crate::HttpConfig;
use crate::error::ApiError;
use crate::hooks::Hooks;
use crate::metrics::{Metrics, device_label};

/// An HTTP request as the pipeline sees it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header fields, names in lower case, in arrival order.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

impl HttpRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// An HTTP response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// The private key under which the HTTP layer records the signers of a request it verified
/// (a list of addresses); devices gating operator actions read it.
pub const VERIFIED_SIGNERS: &str = "priv-verified-signers";

/// Decodes request bodies of codecs other than `httpsig@1.0` (e.g. ANS-104 data items), and
/// checks signatures per the node's policy. Provided by the node.
pub trait RequestCodec: Send + Sync + 'static {
    /// Decodes a body of the given codec into a structured message, or `None` if this codec is
    /// not handled.
    fn decode(&self, codec: &str, body: &Bytes) -> Option<ao_core::Result<Message>>;
    /// Applies the node's verification policy to a decoded, signed request, given the request
    /// as received when it came as an httpsig message; returns the addresses whose signatures
    /// were verified (empty when the policy does not verify).
    fn verify(
        &self,
        _msg: &Message,
        _received: Option<(&HttpMessage, &RequestLine)>,
    ) -> ao_core::Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Encodes a result for a codec other than httpsig/json/flat, as `(content-type, body)`.
    fn encode(&self, _codec: &str, _msg: &Message) -> Option<ao_core::Result<(String, Vec<u8>)>> {
        None
    }
    /// Signs an outgoing message (HyperBEAM's `force_signed`), or returns it unchanged.
    fn sign(&self, msg: Message) -> ao_core::Result<Message> {
        Ok(msg)
    }
    /// Signs an outgoing message and encodes it with httpsig. Override to cache the encoding of
    /// replies that repeat.
    fn sign_http(&self, msg: Message) -> ao_core::Result<HttpMessage> {
        codec::to_http(&self.sign(msg)?)
    }
}

/// A node's HTTP face: the resolver and everything a request needs.
pub struct Node {
    resolver: Resolver,
    config: HttpConfig,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    codec: Option<Arc<dyn RequestCodec>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const CORS_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";

impl Node {
    /// A node answering through `resolver`. `metrics` should be the same instance the resolver
    /// has as an extension (for `/~hyperbuddy@1.0/metrics`).
    pub fn new(resolver: Resolver, config: HttpConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            resolver,
            config,
            metrics,
            hooks: Hooks::default(),
            codec: None,
            next_id: AtomicU64::new(1),
        }
    }

    /// Sets the codec/signature policy provider.
    #[must_use]
    pub fn with_codec(mut self, codec: Arc<dyn RequestCodec>) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Sets the hook chain.
    #[must_use]
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Answers one request. Never fails: every error becomes a response here.
    pub async fn handle(&self, req: HttpRequest) -> HttpResponse {
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let device = device_label(&req.target);
        let cors_request_headers = req.header("access-control-request-headers").cloned();
        let mut steering = None;
        let mut resp = match self.answer(&req, id, &mut steering).await {
            Ok(r) => r,
            Err(e) => self.error_response(&req, steering, &e, id),
        };
        add_cors(&mut resp, cors_request_headers);
        self.metrics.record(&device, resp.status, started.elapsed());
        tracing::info!(
            target: "ao_http::request",
            request = id,
            method = %req.method,
            path = %truncate(&req.target, 200),
            status = resp.status,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        resp
    }

    /// Answers a request; `steering` receives the keys of the decoded request that choose the
    /// reply's codec, for an error reply.
    async fn answer(
        &self,
        req: &HttpRequest,
        id: u64,
        steering: &mut Option<Message>,
    ) -> Result<HttpResponse, ApiError> {
        if req.method.eq_ignore_ascii_case("OPTIONS") {
            return Ok(HttpResponse {
                status: 204,
                headers: vec![
                    (
                        "access-control-allow-origin".into(),
                        Bytes::from_static(b"*"),
                    ),
                    (
                        "access-control-allow-methods".into(),
                        Bytes::from_static(b"GET, POST, PUT, DELETE, OPTIONS, PATCH"),
                    ),
                    (
                        "access-control-allow-headers".into(),
                        Bytes::from_static(b"*"),
                    ),
                ],
                body: Bytes::new(),
            });
        }
        if req.target.len() > self.config.max_path_bytes {
            return Err(ApiError::UriTooLong {
                limit: self.config.max_path_bytes,
            });
        }
        if req.body.len() > self.config.max_body_bytes {
            return Err(ApiError::TooLarge {
                limit: self.config.max_body_bytes,
            });
        }
        if req.method.eq_ignore_ascii_case("GET") && req.target == "/" {
            return Ok(HttpResponse {
                status: 302,
                headers: vec![(
                    "location".into(),
                    Bytes::from(self.config.default_request.clone()),
                )],
                body: Bytes::new(),
            });
        }
        let singleton = self.singleton(req)?;
        *steering = Some(reply_steering(&singleton));
        let reads_info =
            req.method.eq_ignore_ascii_case("GET") && req.target.starts_with("/~meta@1.0/info");
        if !reads_info && !self.initialized() {
            return Err(ApiError::NotInitialized);
        }
        let singleton = self.hooks.request(singleton).await?;
        let resolved = tokio::time::timeout(
            self.config.request_timeout,
            self.resolver.resolve_singleton(&singleton),
        )
        .await
        .map_err(|_| ApiError::Timeout(self.config.request_timeout))?;
        let result = match resolved {
            Ok(v) => v,
            Err(e) => return Err(ApiError::Resolve(e)),
        };
        let result = self.hooks.response(&singleton, result).await?;
        let msg = force_message(result, 200);
        self.encode(&singleton, msg, id)
    }

    fn initialized(&self) -> bool {
        match self.resolver.extension::<NodeState>() {
            Some(state) => match state.options().get("initialized") {
                Some(Value::Atom(a)) => a.as_str() != "false",
                Some(Value::Binary(b)) => &b[..] != b"false",
                _ => true,
            },
            None => true,
        }
    }

    /// The singleton message of a request (spec §7.1).
    pub fn singleton(&self, req: &HttpRequest) -> Result<Message, ApiError> {
        let codec_device = req
            .header("codec-device")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_ascii_lowercase);
        let content_type = req
            .header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("");
        let codec = match codec_device.as_deref() {
            Some(c) => c.to_owned(),
            None if content_type.eq_ignore_ascii_case("application/ans104") => {
                "ans104@1.0".to_owned()
            }
            None => "httpsig@1.0".to_owned(),
        };
        let mut msg = match codec.as_str() {
            "httpsig@1.0" => {
                let mut http = HttpMessage::default();
                for (name, value) in &req.headers {
                    http.headers.insert(name.clone(), value.clone());
                }
                if !req.body.is_empty() {
                    http.body = Some(req.body.clone());
                }
                let msg =
                    codec::from_http(&http).map_err(|e| ApiError::Malformed(e.to_string()))?;
                let line = RequestLine {
                    method: Some(Bytes::from(req.method.clone())),
                    path: Some(Bytes::from(
                        req.target.split('?').next().unwrap_or("").to_owned(),
                    )),
                };
                self.signed(msg, Some((&http, &line)))?
            }
            other => {
                // The text codecs every node has; the others (ANS-104) are the node's.
                let decoded = match other {
                    "json@1.0" => Some(codec::from_json(&req.body)),
                    "flat@1.0" => Some(codec::from_flat(&req.body)),
                    _ => self.codec.as_ref().and_then(|c| c.decode(other, &req.body)),
                }
                .ok_or_else(|| ApiError::UnsupportedCodec(other.to_owned()))?;
                let msg = decoded.map_err(|e| ApiError::Malformed(e.to_string()))?;
                let mut msg = self.signed(msg, None)?;
                // Headers that steer the reply travel beside a data item too.
                for name in [
                    "accept",
                    "accept-codec",
                    "require-codec",
                    "accept-bundle",
                    "signing-format",
                    // Loop protection of requests proxied between schedulers.
                    ao_devices::scheduler::remote::HOPS_HEADER,
                ] {
                    if let Some(v) = req.header(name)
                        && !msg.contains(name)
                    {
                        msg.insert(name, Value::Binary(v.clone()));
                    }
                }
                msg
            }
        };
        msg.insert("method", req.method.as_str());
        if !matches!(msg.get("path"), Some(Value::Binary(_))) {
            msg.insert("path", req.target.as_str());
        }
        Ok(msg)
    }

    /// A signed request: verified per the policy, reduced to its committed keys, with the
    /// verified signers recorded privately.
    fn signed(
        &self,
        msg: Message,
        received: Option<(&HttpMessage, &RequestLine)>,
    ) -> Result<Message, ApiError> {
        if !msg.is_committed() {
            return Ok(msg);
        }
        let verified = match &self.codec {
            Some(c) => c.verify(&msg, received)?,
            None => Vec::new(),
        };
        let mut msg = ao_core::commitment::with_only_committed(&msg)?;
        if !verified.is_empty() {
            msg.insert(
                VERIFIED_SIGNERS,
                Value::List(verified.into_iter().map(Value::from).collect()),
            );
        }
        Ok(msg)
    }

    fn encode(&self, request: &Message, msg: Message, _id: u64) -> Result<HttpResponse, ApiError> {
        let status = status_of(&msg);
        let codec = reply_codec(request);
        let (headers, body) = match codec.as_str() {
            // A result that already is a JSON document (a device answered `content-type:
            // application/json` with a text `body`, e.g. aoconnect's `{raw: {Output, …}}`, whose
            // mixed-case keys no message can hold) is sent as it is.
            "json@1.0" if is_json_document(&msg) => (
                vec![
                    ("codec-device".into(), Bytes::from(codec.clone())),
                    (
                        "content-type".into(),
                        Bytes::from_static(b"application/json"),
                    ),
                ],
                msg.get("body")
                    .and_then(Value::as_bytes)
                    .cloned()
                    .unwrap_or_default(),
            ),
            "httpsig@1.0" => {
                let http = match &self.codec {
                    Some(c) if !msg.is_committed() => c.sign_http(msg)?,
                    _ => codec::to_http(&msg)?,
                };
                let headers = http.headers.into_iter().collect();
                (headers, http.body.unwrap_or_default())
            }
            "json@1.0" | "flat@1.0" => {
                let body = if codec == "json@1.0" {
                    codec::to_json(&msg)?
                } else {
                    codec::to_flat(&msg)?
                };
                let content_type = if codec == "json@1.0" {
                    "application/json"
                } else {
                    "text/plain"
                };
                let mut headers = scalar_headers(&msg)?;
                headers.push(("codec-device".into(), Bytes::from(codec.clone())));
                headers.push((
                    "content-type".into(),
                    Bytes::from_static(content_type.as_bytes()),
                ));
                (headers, Bytes::from(body))
            }
            other => {
                let encoded = self
                    .codec
                    .as_ref()
                    .and_then(|c| c.encode(other, &msg))
                    .ok_or_else(|| ApiError::UnsupportedCodec(other.to_owned()))??;
                (
                    vec![
                        ("codec-device".into(), Bytes::from(other.to_owned())),
                        ("content-type".into(), Bytes::from(encoded.0)),
                    ],
                    Bytes::from(encoded.1),
                )
            }
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// The reply to a failed request, in the codec the request asked for: from its decoded
    /// keys when it was decoded, else from its headers (a request is not decoded, nor its
    /// signatures verified, a second time to answer its error).
    fn error_response(
        &self,
        req: &HttpRequest,
        steering: Option<Message>,
        e: &ApiError,
        id: u64,
    ) -> HttpResponse {
        let status = e.status();
        if e.is_internal() {
            tracing::error!(request = id, error = %e, method = %req.method, path = %truncate(&req.target, 200), "internal error");
        } else {
            tracing::debug!(request = id, error = %e, "request failed");
        }
        let body = e.public_body(id);
        let msg = match body {
            Value::Message(m) => m.with("status", i64::from(status)),
            other => Message::new()
                .with("status", i64::from(status))
                .with("body", other),
        };
        let request = steering.unwrap_or_else(|| {
            let mut m = Message::new();
            for name in REPLY_STEERING {
                if let Some(v) = req.header(name) {
                    m.insert(name, Value::Binary(v.clone()));
                }
            }
            m
        });
        match self.encode(&request, msg, id) {
            Ok(mut r) => {
                r.status = status;
                r
            }
            Err(_) => HttpResponse {
                status,
                headers: vec![("content-type".into(), Bytes::from_static(b"text/plain"))],
                body: Bytes::from(e.to_string()),
            },
        }
    }
}

/// The keys of a request that [`reply_codec`] reads.
const REPLY_STEERING: [&str; 3] = ["accept-codec", "require-codec", "accept"];

/// A request's keys that choose its reply's codec.
fn reply_steering(request: &Message) -> Message {
    let mut m = Message::new();
    for name in REPLY_STEERING {
        if let Some(v) = request.get(name) {
            m.insert(name, v.clone());
        }
    }
    m
}

/// A non-message result as a message (spec §2.6), with `status` embedded (§7.3 step 5).
pub fn force_message(v: Value, status: u16) -> Message {
    let mut m = match v {
        Value::Message(m) => m,
        Value::List(l) => structured::list_to_message(&l),
        other => Message::new().with("ao-result", "body").with("body", other),
    };
    if !m.contains("status") {
        m.insert(Key::new("status"), Value::Integer(i64::from(status)));
    }
    m
}

/// Whether a result is a JSON document already: `content-type: application/json` and a binary
/// `body`, with nothing else but `status`.
fn is_json_document(msg: &Message) -> bool {
    msg.get_str("content-type")
        .is_some_and(|c| c.eq_ignore_ascii_case("application/json"))
        && matches!(msg.get("body"), Some(Value::Binary(_)))
        && msg
            .keys()
            .all(|k| matches!(k.as_str(), "content-type" | "body" | "status"))
}

/// The HTTP status of a result message: its `status` key, else 200.
pub fn status_of(msg: &Message) -> u16 {
    let s = match msg.get("status") {
        Some(Value::Integer(i)) => u16::try_from(*i).ok(),
        Some(v) => v.as_str().and_then(|s| s.trim().parse().ok()),
        None => Some(200),
    };
    s.filter(|s| (100..=599).contains(s)).unwrap_or(500)
}

/// The codec of the reply (spec §7.4): `accept-codec` / `require-codec` keys, then the `accept`
/// header, then httpsig.
pub fn reply_codec(request: &Message) -> String {
    // Keep `REPLY_STEERING` in step with the keys read here.
    for key in ["accept-codec", "require-codec"] {
        if let Some(c) = request.get_str(key)
            && let Some(codec) = codec_name(c)
        {
            return codec;
        }
    }
    if let Some(accept) = request.get_str("accept") {
        for part in accept.split(',') {
            let mime = part.split(';').next().unwrap_or("").trim();
            if let Some(codec) = codec_name(mime) {
                return codec;
            }
        }
    }
    "httpsig@1.0".to_owned()
}

fn codec_name(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let name = if let Some(m) = t.strip_prefix("application/") {
        if m.contains('@') {
            m.to_owned()
        } else {
            format!("{m}@1.0")
        }
    } else if let Some(d) = t.strip_prefix("device/") {
        d.to_owned()
    } else if t.contains('@') {
        t
    } else {
        return None;
    };
    matches!(
        name.as_str(),
        "httpsig@1.0" | "json@1.0" | "flat@1.0" | "ans104@1.0"
    )
    .then_some(name)
}

/// Top-level scalar keys of a message as header values (their TABM text), for codecs whose
/// body does not carry HTTP semantics (spec §11 item 17: binary header values).
fn scalar_headers(msg: &Message) -> ao_core::Result<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    for (k, v) in msg.iter() {
        if k == "body" || matches!(v, Value::Message(_)) {
            continue;
        }
        let text = match v {
            Value::Binary(b) => b.clone(),
            other => Bytes::from(structured::encode_scalar(other, 0)?.1),
        };
        if text.len() <= 4096
            && text
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            out.push((k.as_str().to_owned(), text));
        }
    }
    Ok(out)
}

fn add_cors(resp: &mut HttpResponse, request_headers: Option<Bytes>) {
    let has = |r: &HttpResponse, n: &str| r.headers.iter().any(|(k, _)| k == n);
    if !has(resp, "access-control-allow-origin") {
        resp.headers.push((
            "access-control-allow-origin".into(),
            Bytes::from_static(b"*"),
        ));
    }
    if !has(resp, "access-control-allow-methods") {
        resp.headers.push((
            "access-control-allow-methods".into(),
            Bytes::from_static(CORS_METHODS.as_bytes()),
        ));
    }
    if let Some(h) = request_headers
        && !has(resp, "access-control-allow-headers")
    {
        resp.headers
            .push(("access-control-allow-headers".into(), h));
    }
}

fn truncate(s: &str, n: usize) -> &str {
    &s[..s.floor_char_boundary(n)]
}
