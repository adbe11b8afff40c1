//! HyperPATH: a request target (path, query) plus the request's other keys → the list of
//! messages to resolve (HyperBEAM's `hb_singleton`, spec §7.2 with the newer grammar of §7.2.1).
//!
//! ```text
//! /~meta@1.0/info            → [{as meta@1.0, {path: ""}}, {path: info}]
//! /<ID>~process@1.0/compute&slot+integer=1
//!                            → [{as process@1.0, {path: <ID>}}, {path: compute, slot: 1}]
//! /a/b=4/c                   → [{}, {path: a}, {path: b, b: "4"}, {path: c}]
//! ```

use bytes::Bytes;
use percent_encoding::percent_decode;

use crate::codec::structured;
use crate::{Error, Key, Message, Result, Value};

/// Limits that bound the work a path can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest path segment in bytes (HyperBEAM: 512).
    pub max_segment_len: usize,
    /// Most segments in one path (sub-resolutions included).
    pub max_segments: usize,
    /// Deepest nesting of `(…)` sub-resolutions.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_segment_len: 512,
            max_segments: 256,
            max_depth: 16,
        }
    }
}

/// A request message of a step, with the keys whose values are sub-resolutions still pending.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// The keys known now.
    pub message: Message,
    /// `key=(…)` and `key+resolve=…` values: resolved, then set, before the step runs.
    pub lazy: Vec<(Key, Vec<Step>)>,
}

impl Request {
    /// A request with no pending keys.
    pub fn new(message: Message) -> Self {
        Self {
            message,
            lazy: Vec::new(),
        }
    }
}

/// One element of a parsed HyperPATH.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A message: the base (first element) or a request applied to the previous result.
    Message(Request),
    /// A message ID to load from the store.
    Id(String),
    /// `{as, Device, Msg}`: a message (possibly `{path: ID}`, to load) with its device set.
    As {
        /// The device name, e.g. `process@1.0`.
        device: String,
        /// The message (its `path` is an ID to load, or the key of a sub-resolution).
        request: Request,
    },
    /// `(…)`: a sub-resolution whose result stands in this position.
    Resolve(Vec<Step>),
}

impl Step {
    /// A plain message step.
    pub fn message(m: Message) -> Self {
        Self::Message(Request::new(m))
    }
}

/// Parses a singleton request (its `path`, with query, and its other keys) into steps.
///
/// Keys with private names (spec §1.3, `priv…`), in the path, the query or the singleton, are
/// dropped: a message's private area holds what the node itself records about a request (the
/// signers the HTTP layer verified), so nothing a client writes may land there.
pub fn from_singleton(singleton: &Message, limits: &Limits) -> Result<Vec<Step>> {
    let path = match singleton.get("path") {
        None => String::new(),
        Some(Value::Binary(b)) => std::str::from_utf8(b)
            .map_err(|_| Error::Path("path is not UTF-8".into()))?
            .to_owned(),
        Some(other) => return Err(Error::Path(format!("path is a {}", other.kind()))),
    };
    let (path_part, query) = split_query(&path);
    let mut globals: Vec<(String, Value)> = singleton
        .iter()
        .filter(|(k, _)| k.as_str() != "path")
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect();
    let mut lazy_globals: Vec<(String, Vec<Step>)> = Vec::new();
    if let Some(q) = query {
        for pair in split_top(q, b'&') {
            if pair.is_empty() {
                continue;
            }
            let pair = percent_decode_str(pair)?;
            let (k, v) = parse_kv(&pair, limits, 0)?;
            if Key::new(&k).is_private() {
                continue;
            }
            globals.retain(|(gk, _)| *gk != k);
            match v {
                KvValue::Now(v) => globals.push((k, v)),
                KvValue::Lazy(steps) => lazy_globals.push((k, steps)),
            }
        }
    }
    let mut steps = parse_path(path_part, limits, 0)?;
    apply_scoped(&mut steps, globals, lazy_globals)?;
    // Private request context (e.g. the signers the HTTP layer verified) goes with every step.
    if !singleton.private_fields().is_empty() {
        for step in &mut steps {
            if let Step::Message(r) | Step::As { request: r, .. } = step {
                for (k, v) in singleton.private_fields() {
                    r.message.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(steps)
}

/// Parses a bare path (no query, no other keys).
pub fn parse(path: &str, limits: &Limits) -> Result<Vec<Step>> {
    from_singleton(&Message::new().with("path", path), limits)
}

fn split_query(path: &str) -> (&str, Option<&str>) {
    let bytes = path.as_bytes();
    let (mut depth, mut quoted) = (0i32, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b'?' if depth == 0 && !quoted => return (&path[..i], Some(&path[i + 1..])),
            _ => {}
        }
    }
    (path, None)
}

/// Splits at `sep` outside parentheses and double quotes.
fn split_top(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            _ if b == sep && depth == 0 && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn percent_decode_str(s: &str) -> Result<String> {
    percent_decode(s.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::Path("percent-decoded path is not UTF-8".into()))
}

fn check_balanced(s: &str) -> Result<()> {
    let (mut depth, mut quoted) = (0i32, false);
    for &b in s.as_bytes() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::Path("unbalanced parentheses".into()));
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(Error::Path("unbalanced parentheses".into()));
    }
    Ok(())
}

fn parse_path(path: &str, limits: &Limits, depth: usize) -> Result<Vec<Step>> {
    if depth > limits.max_depth {
        return Err(Error::TooDeep(limits.max_depth));
    }
    let decoded = percent_decode_str(path)?;
    check_balanced(&decoded)?;
    let mut segments: Vec<String> = Vec::new();
    for seg in split_top(&decoded, b'/') {
        if seg.is_empty() {
            continue;
        }
        if seg.len() > limits.max_segment_len {
            return Err(Error::Path(format!(
                "segment_too_long: a path segment is longer than {} bytes",
                limits.max_segment_len
            )));
        }
        if seg.contains(['(', '"']) {
            segments.push(seg.to_owned());
        } else {
            // A second decoding round: `%252F` still splits (HyperBEAM decodes twice).
            let again = percent_decode_str(seg)?;
            segments.extend(
                again
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        if segments.len() > limits.max_segments {
            return Err(Error::Path(format!(
                "more than {} path segments",
                limits.max_segments
            )));
        }
    }
    if segments.is_empty() && depth > 0 {
        // An empty sub-resolution is an empty list (`k+resolve=` before a `/`).
        return Ok(Vec::new());
    }
    let mut steps = Vec::with_capacity(segments.len() + 1);
    for seg in &segments {
        steps.push(parse_segment(seg, limits, depth)?);
    }
    if !matches!(
        steps.first(),
        Some(Step::Id(_) | Step::As { .. } | Step::Resolve(_))
    ) {
        steps.insert(0, Step::message(Message::new()));
    }
    Ok(steps)
}

fn parse_segment(seg: &str, limits: &Limits, depth: usize) -> Result<Step> {
    if crate::key::is_id_shaped(seg.as_bytes()) {
        return Ok(Step::Id(seg.to_owned()));
    }
    if seg.len() >= 2 && seg.starts_with('(') && seg.ends_with(')') {
        return Ok(Step::Resolve(parse_path(
            &seg[1..seg.len() - 1],
            limits,
            depth + 1,
        )?));
    }
    let bytes = seg.as_bytes();
    let (mut d, mut quoted) = (0i32, false);
    let mut split_at = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => d += 1,
            b')' if !quoted => d -= 1,
            // A space stands for a `+` some encoders wrote as a space, but only before a value.
            b' ' if d == 0 && !quoted && !bytes[i..].contains(&b'=') => {}
            b'&' | b'~' | b'+' | b' ' | b'=' if d == 0 && !quoted => {
                split_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(i) = split_at else {
        return Ok(Step::message(Message::new().with("path", seg)));
    };
    let key = &seg[..i];
    let rest = &seg[i..];
    match bytes[i] {
        b'~' => {
            let parts = split_top(&rest[1..], b'&');
            let device = parts[0];
            if device.is_empty() {
                return Err(Error::Path("empty device name after `~`".into()));
            }
            let mut req = Request::new(Message::new().with("path", key));
            for kv in &parts[1..] {
                add_kv(&mut req, kv, limits, depth)?;
            }
            Ok(Step::As {
                device: device.to_owned(),
                request: req,
            })
        }
        b'&' => {
            let mut req = Request::new(Message::new().with("path", key));
            for kv in split_top(&rest[1..], b'&') {
                add_kv(&mut req, kv, limits, depth)?;
            }
            Ok(Step::Message(req))
        }
        _ => {
            // `Part=Value` or `Part+type=Value`, then optional `&k=v` pairs.
            if key.is_empty() {
                return Err(Error::Path(format!("segment {seg:?} has no key")));
            }
            let parts = split_top(seg, b'&');
            let mut req = Request::new(Message::new().with("path", key));
            add_kv(&mut req, parts[0], limits, depth)?;
            if !req.message.contains(key)
                && !req
                    .lazy
                    .iter()
                    .any(|(k, _)| k.as_str() == Key::new(key).as_str())
            {
                return Err(Error::Path(format!(
                    "segment {seg:?}: a typed key needs a value"
                )));
            }
            for kv in &parts[1..] {
                add_kv(&mut req, kv, limits, depth)?;
            }
            Ok(Step::Message(req))
        }
    }
}

enum KvValue {
    Now(Value),
    Lazy(Vec<Step>),
}

fn add_kv(req: &mut Request, kv: &str, limits: &Limits, depth: usize) -> Result<()> {
    if kv.is_empty() {
        return Ok(());
    }
    let (k, v) = parse_kv(kv, limits, depth)?;
    let key = Key::new(&k);
    if key.is_private() {
        // A request never sets a private key: see [`from_singleton`].
        return Ok(());
    }
    match v {
        KvValue::Now(v) => req.message.insert(key, v),
        KvValue::Lazy(steps) => req.lazy.push((key, steps)),
    }
    Ok(())
}

/// `k[+type][=v]` (a space also separates the type: some encoders turn `+` into a space).
fn parse_kv(kv: &str, limits: &Limits, depth: usize) -> Result<(String, KvValue)> {
    let (name, value) = match kv.find('=') {
        Some(i) => (&kv[..i], Some(&kv[i + 1..])),
        None => (kv, None),
    };
    let (key, ty) = match name.find(['+', ' ']) {
        Some(i) => (&name[..i], Some(name[i + 1..].to_ascii_lowercase())),
        None => (name, None),
    };
    if key.is_empty() {
        return Err(Error::Path(format!("empty key in {kv:?}")));
    }
    let Some(value) = value else {
        if ty.is_some() {
            return Err(Error::Path(format!("typed key {name:?} has no value")));
        }
        return Ok((key.to_owned(), KvValue::Now(Value::r#true())));
    };
    if value.len() >= 2
        && value.starts_with('(')
        && value.ends_with(')')
        && ty.as_deref() != Some("binary")
    {
        return Ok((
            key.to_owned(),
            KvValue::Lazy(parse_path(&value[1..value.len() - 1], limits, depth + 1)?),
        ));
    }
    let v = match ty.as_deref() {
        None | Some("binary") => Value::Binary(Bytes::from(unquote(value).into_owned())),
        Some("resolve") => {
            return Ok((
                key.to_owned(),
                KvValue::Lazy(parse_path(value, limits, depth + 1)?),
            ));
        }
        Some(t) => structured::decode_value(t, value.as_bytes())?,
    };
    Ok((key.to_owned(), KvValue::Now(v)))
}

/// Strips one pair of surrounding double quotes (with `\"` and `\\` unescaped) when the value
/// is exactly one quoted string.
fn unquote(v: &str) -> std::borrow::Cow<'_, str> {
    let b = v.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return std::borrow::Cow::Borrowed(v);
    }
    let inner = &v[1..v.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => out.push(n),
                None => return std::borrow::Cow::Borrowed(v),
            },
            '"' => return std::borrow::Cow::Borrowed(v),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn apply_scoped(
    steps: &mut [Step],
    globals: Vec<(String, Value)>,
    lazy: Vec<(String, Vec<Step>)>,
) -> Result<()> {
    // Types in keys (`k+integer`) are applied before scoping.
    let mut scoped: Vec<(Option<usize>, Key, KvValue)> = Vec::new();
    let mut push = |name: &str, v: KvValue| -> Result<()> {
        let (name, v) = match (name.find(['+', ' ']), v) {
            (Some(i), KvValue::Now(Value::Binary(b))) => {
                let ty = name[i + 1..].to_ascii_lowercase();
                let v = if ty == "resolve" {
                    let text = std::str::from_utf8(&b)
                        .map_err(|_| Error::Path("resolve value is not UTF-8".into()))?;
                    KvValue::Lazy(parse_path(text, &Limits::default(), 1)?)
                } else {
                    KvValue::Now(structured::decode_value(&ty, &b)?)
                };
                (&name[..i], v)
            }
            (Some(i), v) => (&name[..i], v),
            (None, v) => (name, v),
        };
        let dots = name.matches('.').count();
        let (index, key) = match (dots, name.split_once('.')) {
            (1, Some((n, k))) => match n.parse::<usize>() {
                Ok(n) => (Some(n), k),
                Err(_) => return Err(Error::Path(format!("invalid_scope: {name:?}"))),
            },
            _ => (None, name),
        };
        let key = Key::new(key);
        if !key.is_private() {
            scoped.push((index, key, v));
        }
        Ok(())
    };
    for (k, v) in globals {
        push(&k, KvValue::Now(v))?;
    }
    for (k, s) in lazy {
        push(&k, KvValue::Lazy(s))?;
    }
    // Body keys may carry their own `ao-types`: decode them with the structured codec.
    let typed: Vec<(Option<usize>, Key, KvValue)> =
        if scoped.iter().any(|(_, k, _)| k == "ao-types") {
            let mut tabm = Message::new();
            let mut rest = Vec::new();
            for (i, k, v) in scoped {
                match (i, v) {
                    (None, KvValue::Now(v)) => tabm.fields_mut().insert(k, v).map_or((), |_| ()),
                    (i, v) => rest.push((i, k, v)),
                }
            }
            let decoded = structured::from_tabm(&tabm)?;
            rest.extend(
                decoded
                    .iter()
                    .map(|(k, v)| (None, k.clone(), KvValue::Now(v.clone()))),
            );
            rest
        } else {
            scoped
        };
    for (n, step) in steps.iter_mut().enumerate() {
        let req = match step {
            Step::Message(r) | Step::As { request: r, .. } => r,
            Step::Id(_) | Step::Resolve(_) => continue,
        };
        for (index, k, v) in &typed {
            if index.is_some_and(|i| i != n) {
                continue;
            }
            // Keys written in the path itself win over request-wide keys.
            if req.message.contains(k.as_str()) || req.lazy.iter().any(|(lk, _)| lk == k) {
                continue;
            }
            match v {
                KvValue::Now(v) => req.message.insert(k.clone(), v.clone()),
                KvValue::Lazy(s) => req.lazy.push((k.clone(), s.clone())),
            }
        }
    }
    Ok(())
}

/// The reverse of [`from_singleton`] (HyperBEAM's lossy `hb_singleton:to`): joins the path
/// parts with `/`, keeps keys shared by every message once, and scopes the others as `N.key`
/// (typed keys as `N.key+type`).
pub fn to_singleton(steps: &[Step]) -> Result<Message> {
    let mut path = String::new();
    let mut out = Message::new();
    let requests: Vec<(usize, &Request)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Message(r) | Step::As { request: r, .. } => Some((i, r)),
            _ => None,
        })
        .collect();
    for step in steps {
        let part = step_to_path(step)?;
        if !part.is_empty() {
            path.push('/');
            path.push_str(&part);
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    for (i, req) in &requests {
        for (k, v) in req.message.iter() {
            if k == "path" {
                continue;
            }
            let everywhere = requests.len() > 1
                && requests
                    .iter()
                    .all(|(_, r)| r.message.get(k.as_str()) == Some(v));
            let name = if everywhere {
                if out.contains(k.as_str()) || out.contains(&format!("{k}+{}", type_name(v)?)) {
                    continue;
                }
                k.as_str().to_owned()
            } else {
                format!("{i}.{k}")
            };
            match v {
                Value::Binary(b) => out
                    .fields_mut()
                    .insert(Key::new(&name), Value::Binary(b.clone())),
                other => {
                    let (ty, text) = structured::encode_scalar(other, 0)?;
                    out.fields_mut().insert(
                        Key::new(&format!("{name}+{ty}")),
                        Value::Binary(Bytes::from(text)),
                    )
                }
            };
        }
        for (k, sub) in &req.lazy {
            let text = steps_to_path(sub)?;
            out.fields_mut()
                .insert(Key::new(&format!("{i}.{k}+resolve")), Value::from(text));
        }
    }
    out.insert("path", path);
    Ok(out)
}

fn type_name(v: &Value) -> Result<&'static str> {
    Ok(match v {
        Value::Binary(_) => "binary",
        other => structured::encode_scalar(other, 0)?.0,
    })
}

fn step_to_path(step: &Step) -> Result<String> {
    Ok(match step {
        Step::Id(id) => id.clone(),
        Step::Resolve(inner) => format!("({})", steps_to_path(inner)?),
        Step::Message(r) => r.message.get_str("path").unwrap_or("").to_owned(),
        Step::As { device, request } => {
            format!("{}~{device}", request.message.get_str("path").unwrap_or(""))
        }
    })
}

fn steps_to_path(steps: &[Step]) -> Result<String> {
    let mut s = String::new();
    for step in steps {
        let part = step_to_path(step)?;
        if !part.is_empty() {
            s.push('/');
            s.push_str(&part);
        }
    }
    Ok(s)
}
