//! HTTP options, read from the node message (HyperBEAM-style dash-case keys).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ao_core::{Message, Value};

/// Limits and addresses of the HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Where to listen (`host` is the bind address, `port` the port; port 0 picks a free one).
    pub bind: SocketAddr,
    /// Largest request body in bytes (`max-body-bytes`); larger requests get 413.
    pub max_body_bytes: usize,
    /// Most header fields in a request (`max-headers`).
    pub max_headers: usize,
    /// Largest request head (request line and headers) in bytes (`max-header-bytes`).
    pub max_header_bytes: usize,
    /// Longest request target (path and query) in bytes (`max-path-bytes`); longer gets 414.
    pub max_path_bytes: usize,
    /// How long a client may take to send its request head (`header-read-timeout`, ms).
    pub header_read_timeout: Duration,
    /// How long the server waits for the next part of a request body
    /// (`body-read-timeout`, ms); then 408. A body that keeps arriving may take longer.
    pub body_read_timeout: Duration,
    /// How long a request may take to resolve (`request-timeout`, ms); then 504.
    pub request_timeout: Duration,
    /// Most connections served at once (`max-connections`); more wait to be accepted.
    pub max_connections: usize,
    /// Where `GET /` redirects (`default-request`).
    pub default_request: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8734),
            max_body_bytes: 64 * 1024 * 1024,
            max_headers: 128,
            max_header_bytes: 256 * 1024,
            max_path_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            default_request: "/~meta@1.0/info".to_owned(),
        }
    }
}

fn int(opts: &Message, key: &str) -> Option<u64> {
    match opts.get(key)? {
        Value::Integer(i) => u64::try_from(*i).ok(),
        v => v.as_str()?.trim().parse().ok(),
    }
}

impl HttpConfig {
    /// Reads the HTTP options from a node message; absent keys keep their defaults.
    pub fn from_options(opts: &Message) -> Result<Self, crate::Error> {
        let mut c = Self::default();
        let bad = |key: &str| crate::Error::Config(format!("option {key:?} is not a valid value"));
        if let Some(port) = opts.get("port") {
            let p = match port {
                Value::Integer(i) => u16::try_from(*i).ok(),
                v => v.as_str().and_then(|s| s.trim().parse().ok()),
            };
            c.bind.set_port(p.ok_or_else(|| bad("port"))?);
        }
        if let Some(host) = opts.get_str("bind") {
            c.bind.set_ip(host.parse().map_err(|_| bad("bind"))?);
        }
        let usize_opt = |key: &str, slot: &mut usize| -> Result<(), crate::Error> {
            if opts.contains(key) {
                *slot = int(opts, key)
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| bad(key))?;
            }
            Ok(())
        };
        usize_opt("max-body-bytes", &mut c.max_body_bytes)?;
        usize_opt("max-headers", &mut c.max_headers)?;
        usize_opt("max-header-bytes", &mut c.max_header_bytes)?;
        usize_opt("max-path-bytes", &mut c.max_path_bytes)?;
        usize_opt("max-connections", &mut c.max_connections)?;
        if opts.contains("header-read-timeout") {
            c.header_read_timeout = Duration::from_millis(
                int(opts, "header-read-timeout").ok_or_else(|| bad("header-read-timeout"))?,
            );
        }
        if opts.contains("body-read-timeout") {
            c.body_read_timeout = Duration::from_millis(
                int(opts, "body-read-timeout").ok_or_else(|| bad("body-read-timeout"))?,
            );
        }
        if opts.contains("request-timeout") {
            c.request_timeout = Duration::from_millis(
                int(opts, "request-timeout").ok_or_else(|| bad("request-timeout"))?,
            );
        }
        if let Some(r) = opts.get_str("default-request") {
            c.default_request = r.to_owned();
        }
        Ok(c)
    }
}
