//! `router@1.0`: where a request goes (spec devices.md §3.4).
//!
//! Routes are the node option `routes`: a priority-ordered list (a JSON array, or a message
//! with keys `1`, `2`, … as `config.flat` writes it) of route messages:
//!
//! * `template` — a path regex (matched, unanchored, against the lower-cased `route-path` or
//!   `path` with a leading `/`, as HyperBEAM's `hb_path:regex_matches`), or a message template
//!   (every key of the template present in the request with an equal value).
//! * `node` — a URL (the request goes to exactly that URL), or a map with `prefix` (URL
//!   = prefix ++ path), `suffix` (path ++ suffix) or `match`/`with` (a regex replacement on
//!   the path; `\1`/`$1` name groups).
//! * `nodes` — several such maps (each may have `wallet` and `weight`), with `strategy`:
//!   `All` (the default: every node, tried in turn), `Random`, `By-Base` (the base ID modulo
//!   the number of nodes), `By-Weight` (random in proportion to `weight`) or `Nearest` (the
//!   node whose `wallet` is closest to the base ID on the 256-bit ring); `choose` nodes
//!   (default 1) are picked.
//! * `priority` — the sort key when a route is added.
//!
//! Keys: `routes` (GET lists; POST adds one, signed by a `route-owners` member — default the
//! operator), `route` (the URL or route for `route-path`/`path`), `match` (the first matching
//! route), `preprocess` (the request hook: forward matching requests through `relay@1.0`,
//! answer the others locally or with 404 per `router-preprocess-default`) and `info`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Key, Message, Result, Value};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::meta::NodeState;

/// The private request key under which the HTTP layer records the signers it verified
/// (`ao_http::handler::VERIFIED_SIGNERS`; this crate cannot name that one).
pub const VERIFIED_SIGNERS: &str = "priv-verified-signers";

/// Routes added at run time (`POST /~router@1.0/routes`). Until one is added, the routes are
/// read live from the node option `routes`. Once routes are added, the whole table is kept in
/// the store at [`ROUTES_PATH`], so it survives a restart ([`RouterState::restore`]).
#[derive(Debug, Default)]
pub struct RouterState {
    added: RwLock<Option<Vec<Message>>>,
}

/// Where the routes table is stored once routes are added at run time.
pub const ROUTES_PATH: &str = "router@1.0/routes";

impl RouterState {
    /// No routes added yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table stored by an earlier run, if routes were added then; else none added yet.
    pub fn restore(store: &dyn ao_core::Store) -> Result<Self> {
        let state = Self::new();
        if let Some(m) = ao_core::cache::read_message(store, ROUTES_PATH)? {
            state.set(routes_of(m.get("routes")))?;
        }
        Ok(state)
    }

    fn persist(store: &dyn ao_core::Store, routes: &[Message]) -> Result<()> {
        let table = Message::new().with(
            "routes",
            Value::List(routes.iter().cloned().map(Value::Message).collect()),
        );
        let id = ao_core::cache::write_message(store, &table)?;
        store.apply(vec![ao_core::store::Op::MakeLink {
            existing: id,
            new: ROUTES_PATH.to_owned(),
        }])
    }

    fn get(&self) -> Option<Vec<Message>> {
        self.added.read().ok()?.clone()
    }

    fn set(&self, routes: Vec<Message>) -> Result<()> {
        *self
            .added
            .write()
            .map_err(|_| Error::Internal("routes lock poisoned".into()))? = Some(routes);
        Ok(())
    }
}

/// The items of a list value: a list, or a message with keys `1`, `2`, … in numeric order.
pub fn as_list(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::List(l)) => l.clone(),
        Some(Value::Message(m)) => {
            let mut items: Vec<(u64, Value)> = m
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().parse().ok()?, v.clone())))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            items.into_iter().map(|(_, v)| v).collect()
        }
        Some(v @ Value::Binary(_)) => vec![v.clone()],
        _ => Vec::new(),
    }
}

/// The route messages of a `routes` value.
pub fn routes_of(v: Option<&Value>) -> Vec<Message> {
    as_list(v)
        .into_iter()
        .filter_map(|v| match v {
            Value::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The node's routes: those added at run time, else the `routes` option.
pub fn load_routes(ctx: &Context) -> Vec<Message> {
    if let Some(state) = ctx.extension::<RouterState>()
        && let Some(routes) = state.get()
    {
        return routes;
    }
    match ctx.extension::<NodeState>() {
        Some(node) => routes_of(node.options().get("routes")),
        None => Vec::new(),
    }
}

/// Where a routed request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// One URL.
    Url(String),
    /// A route whose `nodes` (each with its `uri`) all get the request (a multi-request).
    Nodes(Message),
}

/// The path a request is routed by: `route-path`, else `path`.
pub fn target_path(msg: &Message) -> Option<&str> {
    msg.get_str("route-path").or_else(|| msg.get_str("path"))
}

/// The longest route pattern compiled; a longer one matches nothing.
const MAX_PATTERN_BYTES: usize = 4096;

/// The most memory one compiled pattern may take (its program, and its lazy DFA's cache).
const MAX_PATTERN_PROGRAM: usize = 1 << 20;

/// Patterns kept compiled.
const PATTERN_CACHE: usize = 256;

/// A route pattern, compiled once. Patterns can come from requests (`router@1.0/match` with
/// `routes` of its own), so each is bounded in length and compiled size, and the cache in
/// entries: at most about `PATTERN_CACHE × 2 × MAX_PATTERN_PROGRAM` bytes in all.
fn regex(pattern: &str) -> Option<regex::Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    if pattern.len() > MAX_PATTERN_BYTES {
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(c) = cache.lock()
        && let Some(r) = c.get(pattern)
    {
        return r.clone();
    }
    let compiled = regex::RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_PROGRAM)
        .dfa_size_limit(MAX_PATTERN_PROGRAM)
        .build()
        .ok();
    if let Ok(mut c) = cache.lock() {
        if c.len() >= PATTERN_CACHE {
            c.clear();
        }
        c.insert(pattern.to_owned(), compiled.clone());
    }
    compiled
}

fn with_slash(p: &str) -> String {
    if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/{p}")
    }
}

/// `hb_path:regex_matches`: both sides key-normalised (lower case unless ID-shaped), with a
/// leading `/`; an invalid regex matches nothing. A pattern anchored with `^` keeps its anchor
/// (`^x` becomes `^/x`; HyperBEAM's `/^x` could never match).
pub fn regex_matches(path: &str, pattern: &str) -> bool {
    let path = with_slash(&ao_core::key::normalize(path));
    let pattern = ao_core::key::normalize(pattern);
    let pattern = match pattern.strip_prefix('^') {
        Some(rest) => format!("^{}", with_slash(rest)),
        None => with_slash(&pattern),
    };
    regex(&pattern).is_some_and(|r| r.is_match(&path))
}

fn template_matches(to_match: &Message, template: &Value) -> bool {
    match template {
        Value::Message(t) => t.iter().all(|(k, v)| to_match.get(k.as_str()) == Some(v)),
        v => match (v.as_str(), target_path(to_match)) {
            (Some(pattern), Some(path)) => regex_matches(path, pattern),
            _ => false,
        },
    }
}

/// The first route whose template matches (with `reference` set to `routes/<n>`); an
/// absolute `http(s)://` path is its own route.
pub fn match_routes(to_match: &Message, routes: &[Message]) -> Option<Message> {
    if let Some(p) = target_path(to_match)
        && (p.starts_with("http://") || p.starts_with("https://"))
    {
        return Some(Message::new().with("node", p).with("reference", "explicit"));
    }
    routes.iter().enumerate().find_map(|(i, r)| {
        let template = r
            .get("template")
            .cloned()
            .unwrap_or(Value::Message(Message::new()));
        template_matches(to_match, &template)
            .then(|| r.clone().with("reference", format!("routes/{}", i + 1)))
    })
}

/// Erlang `re:replace` replacement syntax (`\1`, `&`) to the `regex` crate's (`${1}`, `${0}`).
fn replacement(with: &str) -> String {
    let mut out = String::with_capacity(with.len());
    let mut chars = with.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        n.push(*d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('&') => {
                    out.push('&');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '&' => out.push_str("${0}"),
            c => out.push(c),
        }
    }
    out
}

/// A node map's rewrite of the request path (`apply_route`): `prefix`, `suffix` or
/// `match`/`with`.
pub fn apply_route(path: &str, node: &Message) -> Result<String> {
    if let Some(prefix) = node.get_str("prefix") {
        return Ok(format!("{prefix}{path}"));
    }
    if let Some(suffix) = node.get_str("suffix") {
        return Ok(format!("{path}{suffix}"));
    }
    if let (Some(m), Some(w)) = (node.get_str("match"), node.get_str("with")) {
        let r = regex::Regex::new(m)
            .map_err(|e| Error::BadRequest(format!("route match regex {m:?}: {e}")))?;
        return Ok(r.replace_all(path, replacement(w).as_str()).into_owned());
    }
    if let Some(uri) = node.get_str("uri") {
        return Ok(uri.to_owned());
    }
    Err(Error::BadRequest(
        "route node has no prefix, suffix or match/with".into(),
    ))
}

fn node_applied(path: &str, node: &Value) -> Value {
    match node {
        Value::Message(n) => match apply_route(path, n) {
            Ok(uri) => Value::Message(n.clone().with("uri", uri)),
            Err(_) => node.clone(),
        },
        other => other.clone(),
    }
}

/// The base of a request as 256 bits (`extract_base`): the first path segment if it is an ID
/// (or starts with one before `~`, `?` or `&`), else the SHA-256 of that segment.
pub fn extract_base(path: &str) -> [u8; 32] {
    let head = path.split('/').find(|s| !s.is_empty()).unwrap_or("");
    if let Some(id) = ao_core::util::decode_id(head) {
        return id;
    }
    let first = head.split(['~', '?', '&']).next().unwrap_or("");
    if let Some(id) = ao_core::util::decode_id(first) {
        return id;
    }
    Sha256::digest(head.as_bytes()).into()
}

/// `a mod n` for a 256-bit big-endian `a`.
fn mod_small(a: &[u8; 32], n: usize) -> usize {
    let n = n as u128;
    let mut r: u128 = 0;
    for b in a {
        r = ((r << 8) | u128::from(*b)) % n;
    }
    r as usize
}

/// The distance of two 256-bit numbers on the ring: `min(|a − b|, 2²⁵⁶ − |a − b|)`.
pub fn ring_distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    let mut d = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut v = i16::from(hi[i]) - i16::from(lo[i]) - borrow;
        borrow = i16::from(v < 0);
        if v < 0 {
            v += 256;
        }
        d[i] = v as u8;
    }
    // 2²⁵⁶ − d = two's complement of d.
    let mut neg = [0u8; 32];
    let mut carry = 1u16;
    for i in (0..32).rev() {
        let v = u16::from(!d[i]) + carry;
        neg[i] = v as u8;
        carry = v >> 8;
    }
    if d == [0; 32] { d } else { d.min(neg) }
}

/// A node's `weight` for `By-Weight`: a finite number in `0..=1e15` (anything else is 0, so
/// the total stays finite and positive weights stay usable).
fn weight(node: &Value) -> f64 {
    let w = node.as_message().and_then(|m| m.get("weight"));
    let w = match w {
        Some(Value::Integer(i)) => *i as f64,
        Some(Value::Float(f)) => *f,
        Some(v) => v
            .as_str()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0.0),
        None => 0.0,
    };
    if w.is_finite() {
        w.clamp(0.0, 1e15)
    } else {
        0.0
    }
}

/// Picks `n` distinct nodes with a strategy (`Random`, `By-Base`, `By-Weight`, `Nearest`).
pub fn choose(
    n: usize,
    strategy: &str,
    base: &[u8; 32],
    mut nodes: Vec<Value>,
    rng: &mut impl Rng,
) -> Result<Vec<Value>> {
    let n = n.min(nodes.len());
    let mut out = Vec::with_capacity(n);
    match strategy {
        "Random" => {
            for _ in 0..n {
                out.push(nodes.remove(rng.gen_range(0..nodes.len())));
            }
        }
        "By-Base" => {
            for _ in 0..n {
                let i = mod_small(base, nodes.len());
                out.push(nodes.remove(i));
            }
        }
        "By-Weight" => {
            for _ in 0..n {
                let total: f64 = nodes.iter().map(weight).sum();
                let i = if total > 0.0 {
                    let mut r = rng.gen_range(0.0..total);
                    let mut pick = nodes.len() - 1;
                    for (i, x) in nodes.iter().enumerate() {
                        let w = weight(x);
                        if r < w {
                            pick = i;
                            break;
                        }
                        r -= w;
                    }
                    pick
                } else {
                    rng.gen_range(0..nodes.len())
                };
                out.push(nodes.remove(i));
            }
        }
        "Nearest" => {
            let mut scored: Vec<([u8; 32], Value)> = nodes
                .into_iter()
                .map(|node| {
                    let wallet = node
                        .as_message()
                        .and_then(|m| m.get_str("wallet"))
                        .and_then(ao_core::util::decode_id);
                    let d = wallet.map_or([0xff; 32], |w| ring_distance(&w, base));
                    (d, node)
                })
                .collect();
            scored.sort_by_key(|a| a.0);
            out.extend(scored.into_iter().take(n).map(|(_, v)| v));
        }
        other => {
            return Err(Error::BadRequest(format!(
                "unknown route strategy {other:?} (All, Random, By-Base, By-Weight, Nearest)"
            )));
        }
    }
    Ok(out)
}

/// Routes a message (`dev_router:route`): the matching route's `node`, or its `nodes` chosen
/// by its strategy. No match is a 404.
pub fn route(msg: &Message, routes: &[Message], rng: &mut impl Rng) -> Result<Routed> {
    let path = target_path(msg).unwrap_or("/").to_owned();
    let r = match_routes(msg, routes).ok_or_else(|| {
        Error::status(
            404,
            format!("No viable route: no route template matches {path:?}."),
        )
    })?;
    match r.get("node") {
        Some(Value::Binary(_)) => {
            let url = r.get_str("node").unwrap_or_default().to_owned();
            return Ok(Routed::Url(url));
        }
        Some(Value::Message(node)) => return apply_route(&path, node).map(Routed::Url),
        _ => {}
    }
    let nodes: Vec<Value> = as_list(r.get("nodes"))
        .iter()
        .map(|n| node_applied(&path, n))
        .collect();
    if nodes.is_empty() {
        return Err(Error::status(
            502,
            "the matching route has no node or nodes",
        ));
    }
    let strategy = r.get_str("strategy").unwrap_or("All");
    if strategy == "All" {
        return Ok(Routed::Nodes(r.with("nodes", Value::List(nodes))));
    }
    let n = r
        .get("choose")
        .and_then(Value::as_integer)
        .unwrap_or(1)
        .max(1) as usize;
    let base = extract_base(&path);
    let mut chosen = choose(n, strategy, &base, nodes, rng)?;
    if chosen.len() == 1 {
        return match chosen.remove(0) {
            Value::Message(m) => m
                .get_str("uri")
                .map(|u| Routed::Url(u.to_owned()))
                .ok_or_else(|| Error::BadRequest("route node has no URI".into())),
            v => v
                .as_str()
                .map(|u| Routed::Url(u.to_owned()))
                .ok_or_else(|| Error::BadRequest("route node is not a URL".into())),
        };
    }
    Ok(Routed::Nodes(r.with("nodes", Value::List(chosen))))
}

/// Whether a request was signed by one of `owners`: the HTTP layer verified it, or one of its
/// commitments by an owner verifies.
pub fn signed_by_any(request: &Message, owners: &[String]) -> bool {
    if let Some(Value::List(signers)) = request.private(VERIFIED_SIGNERS)
        && signers
            .iter()
            .any(|s| s.as_str().is_some_and(|s| owners.iter().any(|o| o == s)))
    {
        return true;
    }
    let Some(commitments) = request.commitments() else {
        return false;
    };
    commitments.iter().any(|(id, c)| {
        c.as_message()
            .and_then(|c| c.get_str("committer"))
            .is_some_and(|committer| owners.iter().any(|o| o == committer))
            && ao_core::verify::verify_commitment(request, id.as_str()).is_ok()
    })
}

/// Keys of a route POST that are not part of the route.
const NOT_ROUTE_KEYS: [&str; 11] = [
    "path",
    "method",
    "commitments",
    "signature",
    "signature-input",
    "host",
    "content-length",
    "user-agent",
    "accept",
    "accept-encoding",
    "connection",
];

fn priority(r: &Message) -> i64 {
    r.get("priority")
        .and_then(Value::as_integer)
        .unwrap_or(i64::MAX)
}

fn routes_key(request: &Message, ctx: &Context) -> Result<Value> {
    let routes = load_routes(ctx);
    if !request
        .get_str("method")
        .is_some_and(|m| m.eq_ignore_ascii_case("POST"))
    {
        return Ok(Value::List(
            routes.into_iter().map(Value::Message).collect(),
        ));
    }
    let node = ctx
        .extension::<NodeState>()
        .ok_or_else(|| Error::Internal("router@1.0 needs the node state".into()))?;
    let owners: Vec<String> = match node.options().get("route-owners") {
        Some(v) => as_list(Some(v))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        None => vec![node.operator()],
    };
    if !signed_by_any(request, &node.authorizers(owners)) {
        return Err(Error::status(
            403,
            "Unauthorized: routes are added only by a route owner's signature.",
        ));
    }
    let mut route = Message::new();
    for (k, v) in request.iter() {
        if !NOT_ROUTE_KEYS.contains(&k.as_str()) {
            route.insert(Key::clone(k), v.clone());
        }
    }
    if !route.contains("template") || !(route.contains("node") || route.contains("nodes")) {
        return Err(Error::BadRequest(
            "a route needs a template and a node or nodes".into(),
        ));
    }
    let mut all = routes;
    all.insert(0, route);
    all.sort_by_key(priority);
    if let Some(store) = ctx.store() {
        RouterState::persist(store.as_ref(), &all)?;
    }
    ctx.extension::<RouterState>()
        .ok_or_else(|| Error::Internal("router@1.0 needs its state".into()))?
        .set(all)?;
    Ok(Value::from("Route added."))
}

/// `preprocess` (the request hook): `{request: Singleton}` → `{body: Singleton'}`.
fn preprocess(hook_request: &Message, ctx: &Context) -> Result<Value> {
    let original = hook_request
        .get_message("request")
        .or_else(|| hook_request.get_message("body"))
        .cloned()
        .ok_or_else(|| Error::BadRequest("preprocess: no request".into()))?;
    let routes = load_routes(ctx);
    if match_routes(&original, &routes).is_some() {
        return Ok(Value::Message(
            Message::new().with("body", Value::Message(crate::relay::forward(&original))),
        ));
    }
    let default = ctx
        .extension::<NodeState>()
        .and_then(|n| {
            n.options()
                .get_str("router-preprocess-default")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "local".to_owned());
    match default.as_str() {
        "error" => Err(Error::status(
            404,
            "No matching template found in the given routes.",
        )),
        _ => Ok(Value::Message(
            Message::new().with("body", Value::Message(original)),
        )),
    }
}

fn info() -> Message {
    Message::new()
        .with(
            "description",
            "Router device for handling outbound message routing",
        )
        .with("version", "1.0")
        .with(
            "api",
            Message::new()
                .with("info", "Get device info")
                .with(
                    "routes",
                    "GET lists the routes; POST adds one (route owners)",
                )
                .with("route", "Find the route for route-path (or path)")
                .with("match", "The first route whose template matches")
                .with(
                    "preprocess",
                    "Request hook: relay matching requests, per router-preprocess-default",
                ),
        )
}

/// The `router@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouterDevice;

impl Device for RouterDevice {
    fn id(&self) -> &str {
        "router@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["info", "routes", "route", "match", "preprocess"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out = match key {
            "info" => Ok(Value::Message(info())),
            "routes" => routes_key(request, ctx),
            "route" => {
                let routes = load_routes(ctx);
                route(request, &routes, &mut rand::thread_rng()).map(|r| match r {
                    Routed::Url(u) => Value::from(u),
                    Routed::Nodes(m) => Value::Message(m),
                })
            }
            "match" => {
                let routes = match base.get("routes") {
                    Some(v) => routes_of(Some(v)),
                    None => load_routes(ctx),
                };
                match_routes(request, &routes)
                    .map(Value::Message)
                    .ok_or_else(|| Error::status(404, "no_matching_route"))
            }
            "preprocess" => preprocess(request, ctx),
            _ => return None,
        };
        Some(Box::pin(async move { out }))
    }
}

/// The URL of a scheduler's location record cached at `scheduler-locations/<address>` (spec
/// devices.md §3.6), for routing requests to a remote scheduler. `None` when no record is
/// cached or it has no `url`.
pub fn scheduler_location(ctx: &Context, address: &str) -> Option<String> {
    let store = ctx.store()?;
    let record =
        ao_core::cache::read_message(store.as_ref(), &format!("scheduler-locations/{address}"))
            .ok()??;
    let record = match record.get_message("body") {
        Some(b) if !record.contains("url") => b.clone(),
        _ => record,
    };
    record.get_str("url").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ao_core::msg;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn templates_as_regexes_and_messages() {
        let routes = vec![
            msg! { "template" => msg! { "other-key" => "other-value" }, "node" => "incorrect" },
            msg! { "template" => msg! { "special-key" => "special-value" }, "node" => "correct" },
            msg! { "template" => "/~meta@1.0/.*", "node" => msg! { "prefix" => "http://b:1" } },
        ];
        let m = msg! { "path" => "/", "special-key" => "special-value" };
        assert_eq!(
            route(&m, &routes, &mut rng()).unwrap(),
            Routed::Url("correct".into())
        );
        let m = msg! { "path" => "/~meta@1.0/info?x=1" };
        assert_eq!(
            route(&m, &routes, &mut rng()).unwrap(),
            Routed::Url("http://b:1/~meta@1.0/info?x=1".into())
        );
        // route-path wins over path; upper case is folded as HyperBEAM's key normalisation.
        let m = msg! { "path" => "route", "route-path" => "/~META@1.0/info" };
        assert!(matches!(route(&m, &routes, &mut rng()), Ok(Routed::Url(_))));
        let m = msg! { "path" => "/nothing" };
        assert_eq!(
            route(&m, &routes, &mut rng()).unwrap_err().http_status(),
            404
        );
        // Explicit URLs route to themselves; invalid regexes match nothing.
        let m = msg! { "path" => "https://example.com/x" };
        assert_eq!(
            route(&m, &[], &mut rng()).unwrap(),
            Routed::Url("https://example.com/x".into())
        );
        // `*` becomes `/*` (a leading `/` is added to both sides): it matches every path.
        assert!(regex_matches("/a", "*"));
        assert!(!regex_matches("/a", "/(unclosed"));
        assert!(regex_matches("/a/b", "^a/"));
        assert!(regex_matches("/a/b", "^/a/b$"));
        assert!(!regex_matches("/x/a/b", "^/a"));
        // Patterns a request may bring are bounded: too long, or compiling too large (a
        // thousand-fold repetition of a class), they match nothing.
        let long = format!("^/a{}", "b?".repeat(MAX_PATTERN_BYTES));
        assert!(!regex_matches("/a", &long));
        assert!(!regex_matches("/a", "^/(\\w{1000}){1000}"));
        assert!(regex_matches("/aaa", "^/\\w{3}$"));
        assert!(match_routes(&msg! { "path" => "/x/meta@1.0" }, &routes).is_none());
    }

    #[test]
    fn node_rewrites() {
        assert_eq!(
            apply_route("/a/b", &msg! { "prefix" => "http://h:1" }).unwrap(),
            "http://h:1/a/b"
        );
        assert_eq!(
            apply_route("/a/b", &msg! { "suffix" => "?x=1" }).unwrap(),
            "/a/b?x=1"
        );
        assert_eq!(
            apply_route(
                "/old/7/x",
                &msg! { "match" => "^/old/([0-9]+)", "with" => "http://h:1/new/\\1" }
            )
            .unwrap(),
            "http://h:1/new/7/x"
        );
        assert!(apply_route("/a", &msg! { "weight" => 1i64 }).is_err());
    }

    #[test]
    fn lists_come_as_lists_or_numbered_messages() {
        let l = as_list(Some(&Value::Message(
            msg! { "2" => "b", "10" => "c", "1" => "a" },
        )));
        assert_eq!(
            l,
            vec![Value::from("a"), Value::from("b"), Value::from("c")]
        );
    }

    #[test]
    fn ring_distance_wraps() {
        let mut a = [0u8; 32];
        let mut b = [0xffu8; 32];
        // a = 1, b = 2^256 - 1: distance 2 the short way round.
        a[31] = 1;
        let d = ring_distance(&a, &b);
        let mut two = [0u8; 32];
        two[31] = 2;
        assert_eq!(d, two);
        b = a;
        assert_eq!(ring_distance(&a, &b), [0u8; 32]);
        assert_eq!(mod_small(&[0xff; 32], 7), {
            // (2^256 - 1) mod 7 = (2^(256 mod 3) - 1) mod 7 since 2^3 ≡ 1 (mod 7).
            (2u64.pow(256 % 3) - 1) as usize % 7
        });
    }

    fn nodes(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                Value::Message(msg! {
                    "prefix" => format!("http://n{i}"),
                    "wallet" => ao_core::util::b64u(&Sha256::digest([i as u8])),
                    "weight" => i as i64 + 1,
                })
            })
            .collect()
    }

    #[test]
    fn strategies_pick_distinct_nodes() {
        let base = extract_base("/some/path");
        for s in ["Random", "By-Base", "By-Weight", "Nearest"] {
            let picked = choose(3, s, &base, nodes(5), &mut rng()).unwrap();
            assert_eq!(picked.len(), 3, "{s}");
            for (i, p) in picked.iter().enumerate() {
                assert!(!picked[i + 1..].contains(p), "{s} picked a node twice");
            }
            // Asking for more than there are gives them all.
            assert_eq!(choose(9, s, &base, nodes(5), &mut rng()).unwrap().len(), 5);
        }
        assert!(choose(1, "Sideways", &base, nodes(2), &mut rng()).is_err());
        // By-Weight: weights that are not finite count as 0, huge ones are capped.
        let weighted =
            |w: &str| Value::Message(msg! { "prefix" => format!("http://{w}"), "weight" => w });
        for _ in 0..20 {
            let ns = vec![
                weighted("inf"),
                weighted("NaN"),
                weighted("1e308"),
                weighted("1e308"),
            ];
            let picked = choose(1, "By-Weight", &base, ns, &mut rng()).unwrap();
            let prefix = picked[0].as_message().unwrap().get_str("prefix").unwrap();
            assert_eq!(prefix, "http://1e308");
        }
        // By-Base: the base modulo the number of nodes, then the next among the rest.
        let i = mod_small(&base, 5);
        let picked = choose(2, "By-Base", &base, nodes(5), &mut rng()).unwrap();
        let mut rest = nodes(5);
        let first = rest.remove(i);
        assert_eq!(picked[0], first);
        assert_eq!(picked[1], rest[mod_small(&base, 4)]);
        // Nearest: a node whose wallet is the base itself is at distance 0.
        let id = ao_core::util::b64u(&base);
        let mut ns = nodes(4);
        ns.push(Value::Message(
            msg! { "prefix" => "http://me", "wallet" => id.clone() },
        ));
        let picked = choose(1, "Nearest", &base, ns, &mut rng()).unwrap();
        assert_eq!(
            picked[0].as_message().unwrap().get_str("wallet"),
            Some(id.as_str())
        );
    }

    #[test]
    fn bases_are_ids_or_hashes() {
        let id = "CtOVB2dBtyN_vw3BdzCOrvcQvd9Y1oUGT-zLit8E3qM";
        let native = ao_core::util::decode_id(id).unwrap();
        assert_eq!(extract_base(&format!("/{id}~process@1.0/slot")), native);
        assert_eq!(extract_base(&format!("/{id}/slot")), native);
        let h: [u8; 32] = Sha256::digest(b"~meta@1.0").into();
        assert_eq!(extract_base("/~meta@1.0/info"), h);
    }
}
