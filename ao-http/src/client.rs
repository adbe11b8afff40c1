//! The outbound HTTP client: messages to peers, as HyperBEAM's `hb_http:request` sends them
//! (spec ao-core.md §7, client side).
//!
//! * Encoding: `httpsig@1.0` by default (headers and body from [`ao_core::codec::to_http`]),
//!   `ans104@1.0` when the message's `codec-device` says so. A message the node was asked to
//!   sign is signed with the node wallet; if the peer answers 422 to a signed httpsig message,
//!   it is signed as an ANS-104 item and sent once more (HyperBEAM's codec downgrade).
//! * Decoding: with an `ao-result` header the reply is that key of the decoded message; else
//!   the message decoded per its `codec-device` (httpsig by default) with `status` set.
//! * One client per node (connections are pooled and reused), connect and request timeouts,
//!   bounded redirects (3xx with `location`, when asked), and bounded retries of idempotent
//!   requests whose connection failed.
//! * Failures are typed ([`PeerError`]): unreachable → 502, too slow → 504.

use std::sync::Arc;
use std::time::Duration;

use ao_core::codec::{self, httpsig::HttpMessage};
use ao_core::device::BoxFuture;
use ao_core::wallet::Wallet;
use ao_core::{Message, Value};
use ao_devices::relay::{Outbound, PeerClient, PeerError, Reply, split_url};
use bytes::Bytes;

use crate::address::{Blocked, BlockedAddresses, FilteringResolver};

/// Limits of the outbound client, read from the node options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// How long a connection may take to open (`http-connect-timeout`, ms).
    pub connect_timeout: Duration,
    /// How long a request may take, connection to last body byte (`http-request-timeout`, ms).
    pub request_timeout: Duration,
    /// Most redirects followed for one request (`http-max-redirects`).
    pub max_redirects: usize,
    /// Retries of an idempotent request whose connection failed (`http-retries`).
    pub retries: usize,
    /// Idle connections kept per peer (`http-pool-idle-per-host`).
    pub pool_idle_per_host: usize,
    /// The largest reply body read from a peer (`http-max-reply-bytes`): a larger one is a
    /// bad reply, so a peer (any URL a relay request names) cannot fill the node's memory.
    pub max_reply_bytes: u64,
    /// The addresses requests may not reach (`http-blocked-addresses`: `link-local`, the
    /// default, `internal` or `none`).
    pub blocked_addresses: BlockedAddresses,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_redirects: 5,
            retries: 2,
            pool_idle_per_host: 32,
            max_reply_bytes: 64 << 20,
            blocked_addresses: BlockedAddresses::default(),
        }
    }
}

fn int(opts: &Message, key: &str) -> Option<Result<u64, crate::Error>> {
    let v = opts.get(key)?;
    let n = match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        v => v.as_str().and_then(|s| s.trim().parse().ok()),
    };
    Some(n.ok_or_else(|| crate::Error::Config(format!("option {key:?} is not a valid number"))))
}

impl ClientConfig {
    /// Reads the client options; absent keys keep their defaults.
    pub fn from_options(opts: &Message) -> Result<Self, crate::Error> {
        let mut c = Self::default();
        if let Some(v) = int(opts, "http-connect-timeout") {
            c.connect_timeout = Duration::from_millis(v?);
        }
        if let Some(v) = int(opts, "http-request-timeout") {
            c.request_timeout = Duration::from_millis(v?);
        }
        if let Some(v) = int(opts, "http-max-redirects") {
            c.max_redirects = v? as usize;
        }
        if let Some(v) = int(opts, "http-retries") {
            c.retries = v? as usize;
        }
        if let Some(v) = int(opts, "http-pool-idle-per-host") {
            c.pool_idle_per_host = v? as usize;
        }
        if let Some(v) = int(opts, "http-max-reply-bytes") {
            c.max_reply_bytes = v?;
        }
        if let Some(v) = opts.get("http-blocked-addresses") {
            c.blocked_addresses =
                v.as_str()
                    .and_then(BlockedAddresses::parse)
                    .ok_or_else(|| {
                        crate::Error::Config(
                        "option \"http-blocked-addresses\" must be link-local, internal or none"
                            .into(),
                    )
                    })?;
        }
        Ok(c)
    }
}

/// The node's HTTP client.
pub struct HttpClient {
    http: reqwest::Client,
    wallet: Option<Arc<Wallet>>,
    config: ClientConfig,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Headers the transport owns: never copied from a message onto the wire, nor from a reply
/// into the decoded message.
const TRANSPORT_HEADERS: [&str; 14] = [
    "content-length",
    // This client does not decompress, so it must not ask for compression on anyone's behalf.
    "accept-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "host",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "date",
    "server",
    "vary",
];

fn transport_header(name: &str) -> bool {
    TRANSPORT_HEADERS.contains(&name) || name.starts_with("access-control-")
}

/// An encoded request body and its headers.
struct Encoded {
    headers: Vec<(String, Bytes)>,
    body: Option<Bytes>,
}

fn encode(message: &Message) -> Result<Encoded, PeerError> {
    let bad = |e: ao_core::Error| PeerError::BadRequest(e.to_string());
    match message.get_str("codec-device").unwrap_or("httpsig@1.0") {
        "ans104@1.0" => Ok(Encoded {
            headers: vec![
                ("codec-device".into(), Bytes::from_static(b"ans104@1.0")),
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/ans104"),
                ),
            ],
            body: Some(Bytes::from(
                ao_core::ans104::encode(&message.clone().without("codec-device")).map_err(bad)?,
            )),
        }),
        _ => {
            let http = codec::to_http(message).map_err(bad)?;
            Ok(Encoded {
                headers: http.headers.into_iter().collect(),
                body: http.body,
            })
        }
    }
}

fn idempotent(method: &reqwest::Method) -> bool {
    matches!(
        *method,
        reqwest::Method::GET
            | reqwest::Method::HEAD
            | reqwest::Method::OPTIONS
            | reqwest::Method::PUT
            | reqwest::Method::DELETE
    )
}

impl HttpClient {
    /// A client; `wallet` signs the messages sent with [`Outbound::sign`].
    pub fn new(config: ClientConfig, wallet: Option<Arc<Wallet>>) -> Result<Self, crate::Error> {
        let mut builder = reqwest::Client::builder();
        if config.blocked_addresses != BlockedAddresses::None {
            builder = builder.dns_resolver(Arc::new(FilteringResolver(config.blocked_addresses)));
        }
        let http = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("ao-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            wallet,
            config,
        })
    }

    /// Refuses a URL whose host is an address the policy blocks (names are checked as they
    /// resolve).
    fn check_address(&self, peer: &str, url: &str) -> Result<(), PeerError> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            // reqwest reports it as a bad request.
            return Ok(());
        };
        let host = parsed.host_str().unwrap_or("");
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        if let Ok(ip) = host.parse::<std::net::IpAddr>()
            && let Some(reason) = self.config.blocked_addresses.blocks(ip)
        {
            return Err(PeerError::Forbidden {
                peer: peer.to_owned(),
                reason: format!("{ip} is {reason} (option http-blocked-addresses)"),
            });
        }
        Ok(())
    }

    /// The limits.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn wallet(&self) -> Result<&Wallet, PeerError> {
        self.wallet
            .as_deref()
            .ok_or_else(|| PeerError::BadRequest("this node has no wallet to sign with".into()))
    }

    /// Sends a message and decodes the reply (see the module docs).
    pub async fn request(&self, req: Outbound) -> Result<Reply, PeerError> {
        let message = if req.sign {
            ao_core::signature::commit(&req.message, self.wallet()?)
                .map_err(|e| PeerError::BadRequest(format!("signing: {e}")))?
        } else {
            req.message.clone()
        };
        let reply = self.exchange(&req, &message).await?;
        let was_httpsig = message.get_str("codec-device").unwrap_or("httpsig@1.0") == "httpsig@1.0";
        if reply.status == 422 && req.sign && was_httpsig {
            // The peer does not take httpsig here: sign as an ANS-104 item and try once more.
            let unsigned = req.message.clone().without("commitments");
            if let Ok(item) = ao_core::ans104::commit(&unsigned, self.wallet()?) {
                let item = item.with("codec-device", "ans104@1.0");
                tracing::debug!(peer = %req.peer, "422 to httpsig; retrying as ANS-104");
                return self.exchange(&req, &item).await;
            }
        }
        Ok(reply)
    }

    /// One request, following redirects and retrying failed connections as configured.
    async fn exchange(&self, req: &Outbound, message: &Message) -> Result<Reply, PeerError> {
        let encoded = encode(message)?;
        let mut method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| PeerError::BadRequest(format!("bad method {:?}", req.method)))?;
        let mut peer = req.peer.clone();
        let mut path = req.path.clone();
        let mut body = encoded.body.clone();
        let mut redirects = 0;
        loop {
            let resp = self
                .send_once(&method, &peer, &path, &encoded.headers, body.clone(), req)
                .await?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if req.follow_redirects
                && matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = location
                && redirects < self.config.max_redirects
            {
                redirects += 1;
                if location.starts_with("http://") || location.starts_with("https://") {
                    let (p, t) = split_url(&location).map_err(|e| PeerError::BadReply {
                        peer: peer.clone(),
                        reason: format!("bad redirect location: {e}"),
                    })?;
                    peer = p;
                    path = t;
                } else {
                    path = if location.starts_with('/') {
                        location
                    } else {
                        format!("/{location}")
                    };
                }
                if status == 303 {
                    method = reqwest::Method::GET;
                    body = None;
                }
                tracing::debug!(%peer, %path, status, "following redirect");
                continue;
            }
            return decode(&peer, resp, self.config.max_reply_bytes).await;
        }
    }

    async fn send_once(
        &self,
        method: &reqwest::Method,
        peer: &str,
        path: &str,
        headers: &[(String, Bytes)],
        body: Option<Bytes>,
        req: &Outbound,
    ) -> Result<reqwest::Response, PeerError> {
        let url = format!("{}{}", peer.trim_end_matches('/'), path);
        self.check_address(peer, &url)?;
        let timeout = req.timeout.unwrap_or(self.config.request_timeout);
        let mut attempt = 0;
        loop {
            let mut builder = self.http.request(method.clone(), &url).timeout(timeout);
            for (name, value) in headers {
                if transport_header(name) {
                    continue;
                }
                let value = reqwest::header::HeaderValue::from_maybe_shared(value.clone())
                    .map_err(|_| {
                        PeerError::BadRequest(format!("header {name:?} is not a valid value"))
                    })?;
                builder = builder.header(name.as_str(), value);
            }
            for (name, value) in &req.headers {
                if transport_header(&name.to_ascii_lowercase()) {
                    continue;
                }
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            match builder.send().await {
                Ok(resp) => return Ok(resp),
                Err(e) if blocked_cause(&e).is_some() => {
                    return Err(PeerError::Forbidden {
                        peer: peer.to_owned(),
                        reason: blocked_cause(&e)
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    });
                }
                Err(e) if e.is_timeout() => {
                    return Err(PeerError::Timeout {
                        peer: peer.to_owned(),
                        after: timeout,
                    });
                }
                Err(e) if e.is_connect() && idempotent(method) && attempt < self.config.retries => {
                    attempt += 1;
                    tracing::debug!(%peer, attempt, error = %e, "connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(e) if e.is_builder() => {
                    return Err(PeerError::BadRequest(format!("{url}: {e}")));
                }
                Err(e) => {
                    return Err(PeerError::Unreachable {
                        peer: peer.to_owned(),
                        reason: error_chain(&e),
                    });
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Decodes a reply (spec ao-core.md §7, client side).
async fn decode(
    peer: &str,
    mut resp: reqwest::Response,
    max_bytes: u64,
) -> Result<Reply, PeerError> {
    let status = resp.status().as_u16();
    let mut http = HttpMessage::default();
    for (name, value) in resp.headers() {
        let name = name.as_str();
        if transport_header(name) {
            continue;
        }
        let value = Bytes::copy_from_slice(value.as_bytes());
        match http.headers.get_mut(name) {
            Some(existing) => {
                let mut joined = existing.to_vec();
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(&value);
                *existing = Bytes::from(joined);
            }
            None => {
                http.headers.insert(name.to_owned(), value);
            }
        }
    }
    let too_large = || PeerError::BadReply {
        peer: peer.to_owned(),
        reason: format!("the reply is larger than {max_bytes} bytes (http-max-reply-bytes)"),
    };
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            PeerError::Timeout {
                peer: peer.to_owned(),
                after: Duration::ZERO,
            }
        } else {
            PeerError::Unreachable {
                peer: peer.to_owned(),
                reason: error_chain(&e),
            }
        }
    };
    // Read chunk by chunk, so a reply that runs past the limit is dropped as it does.
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let body = Bytes::from(body);
    let bad = |e: ao_core::Error| PeerError::BadReply {
        peer: peer.to_owned(),
        reason: e.to_string(),
    };
    let codec = http
        .header("codec-device")
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("httpsig@1.0")
        .to_ascii_lowercase();
    let ao_result = http
        .header("ao-result")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned);
    let msg = match codec.as_str() {
        "ans104@1.0" => ao_core::ans104::decode(&body).map_err(bad)?,
        "json@1.0" => codec::from_json(&body)
            .map_err(bad)?
            .with("status", i64::from(status)),
        _ => {
            http.body = (!body.is_empty()).then_some(body);
            codec::from_http(&http)
                .map_err(bad)?
                .with("status", i64::from(status))
        }
    };
    match ao_result {
        Some(key) => match msg.get(&key) {
            Some(v) => Ok(Reply::new(status, v.clone())),
            None => Err(PeerError::BadReply {
                peer: peer.to_owned(),
                reason: format!("result key {key:?} is not in the reply"),
            }),
        },
        None => Ok(Reply::new(status, Value::Message(msg))),
    }
}

impl PeerClient for HttpClient {
    fn send(&self, request: Outbound) -> BoxFuture<'_, Result<Reply, PeerError>> {
        Box::pin(self.request(request))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

/// The resolver's refusal, if it is what failed the request.
fn blocked_cause(e: &reqwest::Error) -> Option<&Blocked> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b);
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_shared_names() {
        let opts = Message::new()
            .with("http-connect-timeout", 250i64)
            .with("http-request-timeout", "1500")
            .with("http-retries", 0i64);
        let c = ClientConfig::from_options(&opts).unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.retries, 0);
        assert_eq!(c.max_redirects, ClientConfig::default().max_redirects);
        assert!(ClientConfig::from_options(&Message::new().with("http-retries", "many")).is_err());
        // The router reads the signers the HTTP layer records under this name.
        assert_eq!(
            ao_devices::router::VERIFIED_SIGNERS,
            crate::handler::VERIFIED_SIGNERS
        );
        assert!(transport_header("content-length") && transport_header("access-control-x"));
        assert!(!transport_header("content-type"));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_a_silent_one_times_out() {
        let client = HttpClient::new(
            ClientConfig {
                request_timeout: Duration::from_millis(300),
                retries: 1,
                ..ClientConfig::default()
            },
            None,
        )
        .unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let e = client
            .request(Outbound::new("GET", closed, "/x", Message::new()))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 502, "{e}");
        // Accepts connections, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let e = client
            .request(Outbound::new("GET", url, "/x", Message::new()))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 504, "{e}");
        // Signing needs a wallet.
        let e = client
            .request(Outbound::new("GET", "http://127.0.0.1:1", "/", Message::new()).signed(true))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        hold.abort();
    }

    /// `http-blocked-addresses`: link-local addresses (cloud metadata services) are refused by
    /// default, before any connection, also as a redirect's target; `internal` refuses the
    /// machine's own addresses, by address and by a name resolving to them; `none` refuses
    /// nothing.
    #[tokio::test]
    async fn blocked_addresses_are_refused_with_403() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let default = HttpClient::new(ClientConfig::default(), None).unwrap();
        for url in [
            "http://169.254.169.254",
            "http://[fe80::1]:8080",
            "http://[::ffff:169.254.169.254]",
            // The decimal form of 169.254.169.254, which URL parsing normalises.
            "http://2852039166",
        ] {
            let e = default
                .request(Outbound::new(
                    "GET",
                    url,
                    "/latest/meta-data",
                    Message::new(),
                ))
                .await
                .unwrap_err();
            assert_eq!(e.status(), 403, "{url}: {e}");
            assert!(e.to_string().contains("link-local"), "{e}");
        }

        // A peer on loopback: allowed by default, redirecting to the metadata address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut served = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                s.write_all(
                    b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                served += 1;
            }
            served
        });
        let local = format!("http://127.0.0.1:{port}");
        let reply = default
            .request(
                Outbound::new("GET", local.clone(), "/", Message::new()).follow_redirects(false),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 302);
        let e = default
            .request(
                Outbound::new("GET", local.clone(), "/", Message::new()).follow_redirects(true),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403, "{e}");

        let internal = HttpClient::new(
            ClientConfig {
                blocked_addresses: BlockedAddresses::Internal,
                ..ClientConfig::default()
            },
            None,
        )
        .unwrap();
        for url in [local.clone(), format!("http://localhost:{port}")] {
            let e = internal
                .request(Outbound::new("GET", url.clone(), "/", Message::new()))
                .await
                .unwrap_err();
            assert_eq!(e.status(), 403, "{url}: {e}");
            assert!(e.to_string().contains("loopback"), "{e}");
        }
        let none = HttpClient::new(
            ClientConfig {
                blocked_addresses: BlockedAddresses::None,
                ..ClientConfig::default()
            },
            None,
        )
        .unwrap();
        let reply = none
            .request(
                Outbound::new(
                    "GET",
                    format!("http://localhost:{port}"),
                    "/",
                    Message::new(),
                )
                .follow_redirects(false),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 302);
        server.abort();
        assert!(
            ClientConfig::from_options(&Message::new().with("http-blocked-addresses", "internal"))
                .unwrap()
                .blocked_addresses
                == BlockedAddresses::Internal
        );
        assert!(
            ClientConfig::from_options(&Message::new().with("http-blocked-addresses", "all"))
                .is_err()
        );
    }

    /// Headers given beside the message reach the peer (and transport headers among them are
    /// left to the transport).
    #[tokio::test]
    async fn extra_headers_go_beside_the_message() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8_lossy(&got).to_ascii_lowercase()
        });
        let client = HttpClient::new(ClientConfig::default(), None).unwrap();
        let out = Outbound::new("GET", url, "/x", Message::new().with("k", "v"))
            .header("result-depth", "3")
            .header("Connection", "upgrade");
        let reply = client.request(out).await.unwrap();
        assert_eq!(reply.status, 200);
        let head = server.await.unwrap();
        assert!(head.contains("\r\nresult-depth: 3\r\n"), "{head}");
        assert!(head.contains("\r\nk: v\r\n"), "{head}");
        assert!(!head.contains("connection: upgrade"), "{head}");
    }

    /// A reply over `max_reply_bytes` is a bad reply (502), whether it announces its length or
    /// streams (chunked) past the limit; one within it is read.
    #[tokio::test]
    async fn replies_over_the_limit_are_bad_replies() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let replies: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\nconnection: close\r\n\r\nabc",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n",
            ];
            for (i, head) in replies.iter().enumerate() {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                s.write_all(head).await.unwrap();
                match i {
                    // A chunked body that does not stop: 600 bytes at a time.
                    1 => loop {
                        let chunk = format!("258\r\n{}\r\n", "x".repeat(600));
                        if s.write_all(chunk.as_bytes()).await.is_err() {
                            break;
                        }
                    },
                    2 => s.write_all(&[b'y'; 1000]).await.unwrap(),
                    _ => {}
                }
            }
        });
        let client = HttpClient::new(
            ClientConfig {
                max_reply_bytes: 1000,
                retries: 0,
                ..ClientConfig::default()
            },
            None,
        )
        .unwrap();
        for _ in 0..2 {
            let e = client
                .request(Outbound::new("GET", url.clone(), "/x", Message::new()))
                .await
                .unwrap_err();
            assert_eq!(e.status(), 502, "{e}");
            assert!(e.to_string().contains("larger than 1000 bytes"), "{e}");
        }
        let reply = client
            .request(Outbound::new("GET", url, "/x", Message::new()))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        server.await.unwrap();
    }
}
