//! Scheduler location records and finding a process's scheduler unit (devices.md §3.6).
//!
//! **Records.** A scheduler announces where it can be reached with a signed record
//! `{data-protocol: ao, variant: ao.N.1, type: scheduler-location, url, nonce, time-to-live,
//! codec-device}`, cached under `scheduler-locations/<address>`:
//!
//! * `POST /~scheduler@1.0/location` signed by the operator (the `operator` option: the node's
//!   own signature authorizes nothing, see `NodeState::authorizers`) makes this node sign a new record
//!   for itself (`url` from the request, else `scheduler-location-url`, else the URL the server
//!   listens on, else `http://<host>:<port>`; `nonce` from the request, else one above the known one), cache it,
//!   and send it to every URL of the `scheduler-location-notify-peers` option (through the
//!   durable outbox, at `/~scheduler@1.0/location`; HyperBEAM posts to a `record` key that
//!   does not exist).
//! * The same POST carrying another signer's record (peer gossip) caches it for that signer;
//!   a record signed by this node itself is refused (403), and so is a peer's signed reply
//!   (it has a `status`) posted as its record (400).
//! * Either way a nonce that is not above the known one for that address is refused (400, with
//!   `requested-nonce` and `existing-nonce`), and an unsigned record is refused (400).
//! * `GET /~scheduler@1.0/location?address=<addr>` answers `{body: record}` from the cache
//!   (404 when there is none); for this node without a record, an unsigned record of its
//!   default URL.
//! * A record's `time-to-live` (ms, default `scheduler-location-ttl`, 7 days) counts from when
//!   this node cached it (`scheduler-locations-seen/<address>`); an expired record is neither
//!   answered nor followed, but its nonce still bounds the next one.
//!
//! **Finding the scheduler** ([`find_server`]): a `?hint=<http(s) URL>` on the process reference (unless
//! `scheduler-follow-hints` is false) names it directly; else the process's `scheduler` (or
//! `scheduler-location`) address: none, or this node's address, is local; another address is
//! looked up in the record cache, then among the routes (a route node whose `wallet` is that
//! address). A scheduler that cannot be located is a 404.

use ao_core::store::{Op, Store};
use ao_core::wallet::Wallet;
use ao_core::{Context, Error, Message, Result, Value, cache};

use crate::meta::NodeState;
use crate::relay::{self, Outbound};
use crate::router;

/// The store group of cached records.
pub const LOCATIONS: &str = "scheduler-locations";

/// Where the record of `address` is cached.
pub fn record_path(address: &str) -> String {
    format!("{LOCATIONS}/{address}")
}

/// The cached record of `address` (unwrapped from a `{body: record}` envelope).
pub fn read_record(store: &dyn Store, address: &str) -> Result<Option<Message>> {
    Ok(
        cache::read_message(store, &record_path(address))?.map(|r| match r.get_message("body") {
            Some(b) if !r.contains("url") => b.clone(),
            _ => r,
        }),
    )
}

/// The store group of the times (ms since the epoch) records were cached at.
pub const SEEN: &str = "scheduler-locations-seen";

/// Caches `record` as the location of `address`, noting when (its `time-to-live` counts from
/// then: a record carries no time of its own).
pub fn write_record(store: &dyn Store, address: &str, record: &Message) -> Result<()> {
    let id = cache::write_message(store, record)?;
    store.apply(vec![
        Op::MakeLink {
            existing: id,
            new: record_path(address),
        },
        Op::Write {
            path: format!("{SEEN}/{address}"),
            value: now_ms().to_string().into(),
        },
    ])
}

/// The cached record of `address` unless its `time-to-live` (ms) has passed since it was
/// cached. A record cached without a time (by an older node) does not expire.
pub fn read_live_record(store: &dyn Store, address: &str) -> Result<Option<Message>> {
    let Some(record) = read_record(store, address)? else {
        return Ok(None);
    };
    let seen = store
        .read(&format!("{SEEN}/{address}"))?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok());
    let ttl = record
        .get("time-to-live")
        .and_then(Value::as_integer)
        .and_then(|t| u64::try_from(t).ok());
    if let (Some(seen), Some(ttl)) = (seen, ttl)
        && seen.saturating_add(ttl) < now_ms()
    {
        tracing::debug!(%address, "the cached scheduler location has expired");
        return Ok(None);
    }
    Ok(Some(record))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn nonce_of(record: &Message) -> Option<i64> {
    record.get("nonce").and_then(Value::as_integer)
}

/// This node's address.
pub fn own_address(ctx: &Context) -> Option<String> {
    ctx.extension::<NodeState>()
        .map(|s| s.address().to_owned())
        .or_else(|| ctx.extension::<Wallet>().map(|w| w.address_string()))
}

fn options(ctx: &Context) -> Message {
    ctx.extension::<NodeState>()
        .map(|s| s.options())
        .unwrap_or_default()
}

/// `scheduler-location-url`, else the URL the server listens on, else `http://<host>:<port>`.
fn default_url(ctx: &Context, opts: &Message) -> String {
    if let Some(u) = opts.get_str("scheduler-location-url") {
        return u.to_owned();
    }
    if let Some(u) = ctx
        .extension::<NodeState>()
        .and_then(|s| s.listen_url().map(str::to_owned))
    {
        return u;
    }
    let host = opts.get_str("host").unwrap_or("localhost");
    let port = opts.get("port").and_then(Value::as_integer).unwrap_or(8734);
    format!("http://{host}:{port}")
}

/// The signers of a request: those the HTTP layer verified, else the committers whose
/// commitments verify.
pub fn verified_signers(request: &Message) -> Vec<String> {
    if let Some(Value::List(signers)) = request.private(router::VERIFIED_SIGNERS) {
        return signers
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
    }
    let Some(commitments) = request.commitments() else {
        return Vec::new();
    };
    commitments
        .iter()
        .filter_map(|(id, c)| {
            let committer = c.as_message()?.get_str("committer")?;
            ao_core::verify::verify_commitment(request, id.as_str())
                .ok()
                .map(|_| committer.to_owned())
        })
        .collect()
}

/// `location` GET.
pub fn get(ctx: &Context, req: &Message) -> Result<Value> {
    let me = own_address(ctx).unwrap_or_default();
    let address = req.get_str("address").unwrap_or(&me).to_owned();
    let store = ctx
        .store()
        .ok_or_else(|| Error::Internal("scheduler locations need a store".into()))?;
    if let Some(record) = read_live_record(store.as_ref(), &address)? {
        return Ok(Value::Message(Message::new().with("body", record)));
    }
    if address != me {
        return Err(Error::status(
            404,
            Value::Message(
                Message::new()
                    .with("status", 404i64)
                    .with("body", format!("No location found for address: {address}")),
            ),
        ));
    }
    let opts = options(ctx);
    Ok(Value::Message(
        Message::new().with(
            "body",
            Message::new()
                .with("data-protocol", "ao")
                .with("variant", "ao.N.1")
                .with("type", "scheduler-location")
                .with("url", default_url(ctx, &opts))
                .with("nonce", 0i64)
                .with("time-to-live", ttl(&opts))
                .with("codec-device", "httpsig@1.0")
                .with("address", me),
        ),
    ))
}

/// `scheduler-location-ttl` (ms), default 7 days.
fn ttl(opts: &Message) -> i64 {
    opts.get("scheduler-location-ttl")
        .and_then(Value::as_integer)
        .unwrap_or(7 * 24 * 3600 * 1000)
}

fn stale(requested: i64, existing: i64, signer: &str) -> Error {
    Error::status(
        400,
        Value::Message(
            Message::new()
                .with("status", 400i64)
                .with("body", "Known nonce higher than requested nonce.")
                .with(
                    "reason",
                    format!(
                        "the nonce of a new location record of {signer} must be above \
                         {existing}, the nonce of the record already known"
                    ),
                )
                .with("requested-nonce", requested)
                .with("existing-nonce", existing)
                .with("signers", Value::List(vec![Value::from(signer)])),
        ),
    )
}

/// The URLs of `scheduler-location-notify-peers`.
fn notify_peers(opts: &Message) -> Vec<String> {
    router::as_list(opts.get("scheduler-location-notify-peers"))
        .iter()
        .filter_map(|v| v.as_str().map(|s| s.trim_end_matches('/').to_owned()))
        .collect()
}

/// `location` POST.
pub async fn post(ctx: &Context, req: &Message) -> Result<Value> {
    let req = match req.get_str("target") {
        Some(t) => match req.get(t) {
            Some(Value::Message(m)) => m.clone(),
            _ => return Err(Error::NotFound(format!("location target {t}"))),
        },
        None => req.clone(),
    };
    let signers = verified_signers(&req);
    if signers.is_empty() {
        return Err(Error::status(
            400,
            Value::Message(
                Message::new()
                    .with("status", 400i64)
                    .with("body", "A scheduler location record must be signed."),
            ),
        ));
    }
    let record = ao_core::commitment::with_only_committed(&req).map_err(|e| {
        Error::status(
            400,
            Value::Message(
                Message::new()
                    .with("status", 400i64)
                    .with(
                        "body",
                        "Message invalid: Committed components cannot be validated.",
                    )
                    .with("reason", e.to_string()),
            ),
        )
    })?;
    let store = ctx
        .store()
        .ok_or_else(|| Error::Internal("scheduler locations need a store".into()))?
        .clone();
    let node = ctx.extension::<NodeState>();
    let me = own_address(ctx).unwrap_or_default();
    let operator = node.as_ref().map(|n| n.operator()).unwrap_or_default();
    // The node's own signature authorizes nothing (`NodeState::authorizers`): it signs replies
    // and messages that others choose, so a record "signed by this node" may be one of those.
    let by_operator = operator != me && signers.contains(&operator);
    let signer = if by_operator {
        me.clone()
    } else {
        match signers.iter().find(|s| **s != me) {
            Some(s) => s.clone(),
            None => {
                return Err(Error::status(
                    403,
                    "Unauthorized: this node signs its location record at its operator's \
                     request (the `operator` option, a wallet other than the node's).",
                ));
            }
        }
    };
    let existing = read_record(store.as_ref(), &signer)?
        .and_then(|r| nonce_of(&r))
        .unwrap_or(-1);
    let requested = match nonce_of(&record) {
        Some(n) => n,
        None => existing
            .checked_add(1)
            .ok_or_else(|| stale(i64::MAX, existing, &signer))?,
    };
    if requested <= existing {
        return Err(stale(requested, existing, &signer));
    }
    if !by_operator {
        // A peer's record (gossip): verified above, cached as it is. A signed reply of the peer
        // (whose signature covers its `status`) is not a record, whatever keys it echoes.
        if record.contains("status") {
            return Err(Error::BadRequest(
                "a scheduler location record has no status: this is a signed reply".into(),
            ));
        }
        if record.get_str("url").is_none() {
            return Err(Error::BadRequest(
                "a scheduler location record needs a url".into(),
            ));
        }
        write_record(store.as_ref(), &signer, &record)?;
        tracing::info!(address = %signer, url = record.get_str("url").unwrap_or(""), "cached a peer's scheduler location");
        return Ok(Value::Message(record));
    }
    let opts = options(ctx);
    let wallet = ctx
        .extension::<Wallet>()
        .ok_or_else(|| Error::Internal("signing a location record needs the node wallet".into()))?;
    let url = record
        .get_str("url")
        .map(str::to_owned)
        .unwrap_or_else(|| default_url(ctx, &opts));
    let ttl = record
        .get("time-to-live")
        .and_then(Value::as_integer)
        .unwrap_or_else(|| ttl(&opts));
    let codec = record
        .get_str("accept-codec")
        .unwrap_or("httpsig@1.0")
        .to_owned();
    let fresh = Message::new()
        .with("data-protocol", "ao")
        .with("variant", "ao.N.1")
        .with("type", "scheduler-location")
        .with("url", url.trim_end_matches('/'))
        .with("nonce", requested)
        .with("time-to-live", ttl)
        .with("codec-device", codec);
    let signed = ao_core::signature::commit(&fresh, &wallet)?;
    write_record(store.as_ref(), &me, &signed)?;
    let peers = notify_peers(&opts);
    if !peers.is_empty() {
        notify(ctx, &peers, &signed)?;
    }
    Ok(Value::Message(signed))
}

/// Sends a signed record to peers in the background, through the durable outbox (a peer that
/// is down gets it when it is back).
fn notify(ctx: &Context, peers: &[String], record: &Message) -> Result<()> {
    let client = relay::Client::of(ctx)?;
    for peer in peers {
        let out = Outbound::new(
            "POST",
            peer.as_str(),
            "/~scheduler@1.0/location",
            record.clone(),
        );
        let ctx = ctx.clone();
        let peer = peer.clone();
        client.inner().spawn(Box::pin(async move {
            match relay::outbox::send_durable(&ctx, out).await {
                Ok(r) if r.status == 202 => {
                    tracing::warn!(%peer, "scheduler location queued for a peer that is down")
                }
                Ok(r) if !r.is_ok() => {
                    tracing::warn!(%peer, status = r.status, "a peer refused our scheduler location")
                }
                Ok(_) => tracing::info!(%peer, "peer notified of our scheduler location"),
                Err(e) => tracing::warn!(%peer, error = %e, "notifying a peer failed"),
            }
        }));
    }
    Ok(())
}

/// Where a process's scheduler unit is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// This node.
    Local,
    /// Another node.
    Remote(Remote),
}

/// A remote scheduler unit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Remote {
    /// Its base URL (`scheme://host[:port]`, no trailing `/`).
    pub url: String,
    /// `ao.N.1` (this node's kind) or another variant.
    pub variant: String,
    /// Its address, when known.
    pub address: Option<String>,
}

impl Remote {
    /// A remote scheduler at `url`.
    pub fn new(url: &str, variant: &str, address: Option<String>) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            variant: variant.to_owned(),
            address,
        }
    }

    /// HyperBEAM's redirect: `{status: 307, location, body, variant}`; `location` is the same
    /// request on the scheduler's node (`path`, absolute) or its base URL.
    pub fn redirect(&self, path: Option<&str>) -> Message {
        let location = match path {
            Some(p) => format!("{}{p}", self.url),
            None => self.url.clone(),
        };
        Message::new()
            .with("status", 307i64)
            .with("location", location.as_str())
            .with("body", format!("Redirecting to scheduler: {location}"))
            .with("variant", self.variant.as_str())
    }
}

/// The scheduler address a process names (`scheduler`, else `scheduler-location`).
pub fn scheduler_of(process: &Message) -> Option<String> {
    ["scheduler", "scheduler-location"].iter().find_map(|k| {
        let v = process.get(k)?;
        crate::process::id_value(v).or_else(|| v.as_str().map(str::to_owned))
    })
}

/// A hint that names a URL (`http(s)://…`); other hints mean nothing to this node.
fn url_hint(hint: Option<&str>) -> Option<&str> {
    hint.filter(|h| h.starts_with("http://") || h.starts_with("https://"))
}

fn follow_hints(ctx: &Context) -> bool {
    options(ctx)
        .get("scheduler-follow-hints")
        .is_none_or(Value::is_true)
}

/// The URL of a route node whose `wallet` is `address`.
fn routed_url(ctx: &Context, address: &str) -> Option<String> {
    router::load_routes(ctx).iter().find_map(|r| {
        let mut nodes = router::as_list(r.get("nodes"));
        if let Some(n) = r.get("node") {
            nodes.push(n.clone());
        }
        nodes.iter().find_map(|n| {
            let n = n.as_message()?;
            (n.get_str("wallet")? == address)
                .then(|| n.get_str("prefix").or_else(|| n.get_str("uri")))
                .flatten()
                .map(str::to_owned)
        })
    })
}

/// Where the scheduler of `process` is (see the module documentation). `hint` is a
/// `?hint=<url>` that came with the process reference.
pub fn find_server(ctx: &Context, process: &Message, hint: Option<&str>) -> Result<Server> {
    if let Some(h) = url_hint(hint).filter(|_| follow_hints(ctx)) {
        return Ok(Server::Remote(Remote::new(h, "ao.N.1", None)));
    }
    let Some(named) = scheduler_of(process) else {
        return Ok(Server::Local);
    };
    let (address, named_hint) = relay::split_hint(&named);
    if let Some(h) = url_hint(named_hint.as_deref()).filter(|_| follow_hints(ctx)) {
        return Ok(Server::Remote(Remote::new(
            h,
            "ao.N.1",
            Some(address.to_owned()),
        )));
    }
    let me = own_address(ctx);
    if me.as_deref().is_none_or(|m| m == address) {
        return Ok(Server::Local);
    }
    if let Some(store) = ctx.store()
        && let Some(record) = read_live_record(store.as_ref(), address)?
        && let Some(url) = record.get_str("url")
    {
        let variant = record.get_str("variant").unwrap_or("ao.N.1");
        return Ok(Server::Remote(Remote::new(
            url,
            variant,
            Some(address.to_owned()),
        )));
    }
    if let Some(url) = routed_url(ctx, address) {
        return Ok(Server::Remote(Remote::new(
            &url,
            "ao.N.1",
            Some(address.to_owned()),
        )));
    }
    Err(Error::status(
        404,
        Value::Message(Message::new().with("status", 404i64).with(
            "body",
            format!(
                "No location known for scheduler {address}: no scheduler-locations record, \
                     no route node with that wallet, no hint."
            ),
        )),
    ))
}

/// Whether an outbound request is to be sent as ANS-104 (the message carries an `ans104@1.0`
/// commitment and no other signature).
pub fn is_ans104(msg: &Message) -> bool {
    msg.commitments().is_some_and(|c| {
        c.iter().any(|(_, c)| {
            c.as_message()
                .and_then(|c| c.get_str("commitment-device"))
                .is_some_and(|d| d == "ans104@1.0")
        })
    })
}

/// The outbound form of a signed message: an ANS-104-signed one goes as its item (with only
/// its `ans104@1.0` commitment: the item is rebuilt from it).
pub fn outbound_message(msg: &Message) -> Message {
    if !is_ans104(msg) {
        return msg.clone();
    }
    let mut kept = Message::new();
    if let Some(c) = msg.commitments() {
        for (id, c) in c.iter() {
            if c.as_message()
                .and_then(|c| c.get_str("commitment-device"))
                .is_some_and(|d| d == "ans104@1.0")
            {
                kept.insert(id.clone(), c.clone());
            }
        }
    }
    let first = kept.keys().next().map(|k| k.as_str().to_owned());
    let mut out = msg.clone().without("commitments").with("commitments", kept);
    // The HTTP layer may have merged request headers (`accept`…) beside the item's tags:
    // drop them unless the item signed them.
    let verifies = |m: &Message| {
        first
            .as_deref()
            .is_some_and(|id| ao_core::ans104::verify_commitment(m, id).is_ok())
    };
    if !verifies(&out) {
        let mut stripped = out.clone();
        for k in HTTP_ADDED_KEYS {
            stripped.remove(k);
        }
        if verifies(&stripped) {
            out = stripped;
        }
    }
    out.with("codec-device", "ans104@1.0")
}

/// Keys an HTTP request may carry beside a signed ANS-104 item.
const HTTP_ADDED_KEYS: [&str; 7] = [
    "accept",
    "accept-codec",
    "require-codec",
    "accept-bundle",
    "signing-format",
    "codec-device",
    "content-type",
];

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ao_core::{DeviceRegistry, MemoryStore, Resolver};

    use super::*;

    fn wallet(name: &str) -> Wallet {
        Wallet::load(std::path::Path::new(&format!(
            "../../shared/fixtures/wallets/{name}"
        )))
        .unwrap()
    }

    fn node(routes: Option<Value>) -> (Resolver, Arc<MemoryStore>, String) {
        let store = Arc::new(MemoryStore::new());
        let me = wallet("key-1.json");
        let address = me.address_string();
        // The operator: a wallet of its own (the node's signature authorizes nothing).
        let mut opts = Message::new().with("operator", wallet("test-wallet.json").address_string());
        if let Some(r) = routes {
            opts.insert("routes", r);
        }
        let r = Resolver::builder(DeviceRegistry::builder().build())
            .store(store.clone() as Arc<dyn Store>)
            .extension(Arc::new(me))
            .extension(Arc::new(NodeState::new(opts, address.clone())))
            .build();
        (r, store, address)
    }

    fn record(url: &str, nonce: i64) -> Message {
        Message::new()
            .with("type", "scheduler-location")
            .with("url", url)
            .with("nonce", nonce)
    }

    fn status(r: Result<Value>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(e) => e.http_status(),
        }
    }

    #[test]
    fn finding_the_scheduler() {
        let other = wallet("key-2.json").address_string();
        let third = "x".repeat(43);
        let routes = Value::List(vec![Value::Message(
            Message::new().with("template", "/never").with(
                "nodes",
                Value::List(vec![Value::Message(
                    Message::new()
                        .with("prefix", "http://routed:3")
                        .with("wallet", third.as_str()),
                )]),
            ),
        )]);
        let (r, store, me) = node(Some(routes));
        let ctx = r.context();
        let p = |s: &str| Message::new().with("type", "Process").with("scheduler", s);
        let remote = |url: &str, addr: Option<&str>| {
            Server::Remote(Remote::new(url, "ao.N.1", addr.map(str::to_owned)))
        };
        assert_eq!(
            find_server(&ctx, &Message::new(), None).unwrap(),
            Server::Local
        );
        assert_eq!(find_server(&ctx, &p(&me), None).unwrap(), Server::Local);
        // Unknown: no record, no route, no hint.
        assert_eq!(
            find_server(&ctx, &p(&other), None)
                .unwrap_err()
                .http_status(),
            404
        );
        write_record(store.as_ref(), &other, &record("http://c:2/", 1)).unwrap();
        assert_eq!(
            find_server(&ctx, &p(&other), None).unwrap(),
            remote("http://c:2", Some(&other))
        );
        assert_eq!(
            find_server(&ctx, &p(&third), None).unwrap(),
            remote("http://routed:3", Some(&third))
        );
        // A URL hint wins, even over this node; a hint that is no URL means nothing.
        assert_eq!(
            find_server(&ctx, &p(&me), Some("http://h:4")).unwrap(),
            remote("http://h:4", None)
        );
        assert_eq!(
            find_server(&ctx, &p(&me), Some("local")).unwrap(),
            Server::Local
        );
        assert_eq!(
            find_server(&ctx, &p(&format!("{other}?hint=http%3A%2F%2Fh%3A5")), None).unwrap(),
            remote("http://h:5", Some(&other))
        );
        let redirect = Remote::new("http://c:2", "ao.N.1", None).redirect(Some("/p/slot"));
        assert_eq!(redirect.get_str("location"), Some("http://c:2/p/slot"));
        assert_eq!(
            redirect.get("status").and_then(Value::as_integer),
            Some(307)
        );
    }

    #[test]
    fn records_expire_after_their_time_to_live() {
        let other = wallet("key-2.json").address_string();
        let (r, store, _) = node(None);
        let ctx = r.context();
        let p = Message::new()
            .with("type", "Process")
            .with("scheduler", other.as_str());
        write_record(
            store.as_ref(),
            &other,
            &record("http://c:2", 1).with("time-to-live", 60_000i64),
        )
        .unwrap();
        assert!(matches!(
            find_server(&ctx, &p, None).unwrap(),
            Server::Remote(_)
        ));
        write_record(
            store.as_ref(),
            &other,
            &record("http://c:2", 2).with("time-to-live", 1i64),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(find_server(&ctx, &p, None).unwrap_err().http_status(), 404);
        let asked = get(&ctx, &Message::new().with("address", other.as_str()));
        assert_eq!(status(asked), 404);
        // The expired record still holds the known nonce: an older one is refused.
        assert_eq!(
            read_record(store.as_ref(), &other)
                .unwrap()
                .and_then(|r| nonce_of(&r)),
            Some(2)
        );
    }

    #[test]
    fn records_need_signatures_and_newer_nonces() {
        let (r, store, me) = node(None);
        let ctx = r.context();
        let peer = wallet("key-2.json");
        let post_signed = |m: &Message, w: &Wallet| {
            futures::executor::block_on(post(
                &ctx,
                &ao_core::signature::commit(m, w)
                    .unwrap()
                    .with("method", "POST"),
            ))
        };
        // A peer's record is cached for its signer; older or equal nonces are refused.
        assert_eq!(status(post_signed(&record("http://p:1", 3), &peer)), 200);
        let cached = read_record(store.as_ref(), &peer.address_string())
            .unwrap()
            .unwrap();
        assert_eq!(cached.get_str("url"), Some("http://p:1"));
        assert!(cached.is_committed(), "kept with its signature");
        for stale in [3, 2] {
            match post_signed(&record("http://evil:1", stale), &peer) {
                Err(Error::Status {
                    status: 400,
                    body: Value::Message(b),
                }) => {
                    assert_eq!(b.get("existing-nonce").and_then(Value::as_integer), Some(3));
                    assert_eq!(
                        b.get("requested-nonce").and_then(Value::as_integer),
                        Some(stale)
                    );
                }
                other => panic!("stale nonce {stale}: {other:?}"),
            }
        }
        assert_eq!(status(post_signed(&record("http://p:2", 4), &peer)), 200);
        assert_eq!(
            read_record(store.as_ref(), &peer.address_string())
                .unwrap()
                .unwrap()
                .get_str("url"),
            Some("http://p:2")
        );
        // Unsigned: refused.
        let unsigned = record("http://x:1", 9).with("method", "POST");
        assert_eq!(
            status(futures::executor::block_on(post(&ctx, &unsigned))),
            400
        );
        // A peer's signed reply echoing a record's keys is not a record.
        let reply = record("http://evil:1", 7).with("status", 200i64);
        assert_eq!(status(post_signed(&reply, &peer)), 400);
        // The node's own signature (it signs replies and messages others choose) is neither the
        // operator's request nor a record to cache.
        let ask = Message::new().with("url", "http://me:8");
        assert_eq!(status(post_signed(&ask, &wallet("key-1.json"))), 403);
        assert_eq!(
            status(post_signed(
                &record("http://evil:1", 9),
                &wallet("key-1.json")
            )),
            403
        );
        // The operator's request: the node signs a record of its own, nonce one above.
        let me_wallet = wallet("test-wallet.json");
        let signed = match post_signed(&ask, &me_wallet).unwrap() {
            Value::Message(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(signed.get("nonce").and_then(Value::as_integer), Some(0));
        assert_eq!(ao_core::message_device::committers(&signed), vec![me]);
        assert_eq!(status(post_signed(&ask, &me_wallet)), 200, "nonce 1 now");
        assert_eq!(
            status(post_signed(&ask.with("nonce", 1i64), &me_wallet)),
            400
        );
        match get(&ctx, &Message::new()).unwrap() {
            Value::Message(m) => assert_eq!(
                m.get_message("body")
                    .and_then(|b| b.get("nonce"))
                    .and_then(Value::as_integer),
                Some(1)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            status(get(&ctx, &Message::new().with("address", "y".repeat(43)))),
            404
        );
        // After the highest nonce there is no next one: a record without a nonce is stale.
        assert_eq!(
            status(post_signed(&record("http://p:3", i64::MAX), &peer)),
            200
        );
        let no_nonce = Message::new().with("url", "http://p:4");
        assert_eq!(status(post_signed(&no_nonce, &peer)), 400);
    }
}
