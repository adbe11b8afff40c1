//! `httpsig@1.0`: TABM ⇄ HTTP message (headers and body), spec §5.2.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::codec::flat;
use crate::sf::{self, BareItem};
use crate::util::b64u;
use crate::{Error, Key, Message, Result, Value};

/// Values longer than this many bytes do not fit a header and move to the body (spec §5.2).
pub const MAX_HEADER_LENGTH: usize = 4096;

/// An HTTP message as this codec sees it: lower-case header names to values, and a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpMessage {
    /// Header fields, lower-case names, sorted.
    pub headers: BTreeMap<String, Bytes>,
    /// The body, if any.
    pub body: Option<Bytes>,
}

impl HttpMessage {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.get(name)
    }
}

enum Part<'a> {
    Binary(&'a Bytes),
    /// The small leaves of one nested level, in key order.
    Map(Vec<(&'a str, &'a Bytes)>),
}

/// Encodes a TABM as an HTTP message (spec §5.2.1–§5.2.2).
pub fn encode(tabm: &Message) -> Result<HttpMessage> {
    let mut headers: BTreeMap<String, Bytes> = BTreeMap::new();

    // 1. ID-shaped keys with binary values travel in `ao-ids`.
    let mut ao_ids = Vec::new();
    for (k, v) in tabm.iter() {
        if let (true, Value::Binary(b)) = (k.is_id_shaped(), v) {
            // HyperBEAM writes any key and value here, and then cannot read the header back.
            if !sf::is_key(k.as_str()) || !b.iter().all(|c| (0x20..=0x7e).contains(c)) {
                return Err(Error::Unencodable(format!(
                    "the ID-shaped key {:?} or its value cannot be written in ao-ids",
                    k.as_str()
                )));
            }
            if !ao_ids.is_empty() {
                ao_ids.extend_from_slice(b", ");
            }
            ao_ids.extend_from_slice(k.as_str().as_bytes());
            ao_ids.push(b'=');
            sf::write_string(&mut ao_ids, b);
        }
    }
    if !ao_ids.is_empty() {
        headers.insert("ao-ids".into(), Bytes::from(ao_ids));
    }

    // 3. The inline body key.
    let inline_key: std::borrow::Cow<'_, str> = match tabm.get("inline-body-key") {
        Some(Value::Binary(b)) => String::from_utf8_lossy(b),
        // It names the key carried as the body: as a group it would travel as parts beside the
        // header that names the key, and the two would collide when decoded.
        Some(other) => {
            return Err(Error::Unencodable(format!(
                "`inline-body-key` names a key, so it must be a binary, not a {}",
                other.kind()
            )));
        }
        None if tabm.contains("body") => "body".into(),
        None if tabm.contains("data") => {
            headers.insert("inline-body-key".into(), Bytes::from_static(b"data"));
            "data".into()
        }
        _ => "body".into(),
    };
    let inline_key: &str = &inline_key;

    // 4. Headers and the body map.
    let mut body_map: Vec<(&str, &Value)> = Vec::new();
    for (k, v) in tabm.iter() {
        let k = k.as_str();
        if matches!(k, "commitments" | "signature" | "signature-input" | "priv") {
            continue;
        }
        if matches!(v, Value::Binary(_)) && crate::key::is_id_shaped(k.as_bytes()) {
            continue;
        }
        match v {
            _ if k == "body" || k == inline_key => body_map.push((k, v)),
            Value::Message(_) => body_map.push((k, v)),
            Value::Binary(b) if b.len() <= MAX_HEADER_LENGTH => {
                headers.insert(k.to_owned(), b.clone());
            }
            Value::Binary(_) => body_map.push((k, v)),
            other => {
                return Err(Error::Unencodable(format!(
                    "httpsig@1.0 takes a TABM; key {k:?} holds a {}",
                    other.kind()
                )));
            }
        }
    }

    // 5. Flatten nested maps into parts.
    let mut grouped: BTreeMap<String, Part<'_>> = BTreeMap::new();
    group_maps(&mut body_map.iter().copied(), "", &mut grouped, 0)?;

    // 6. The body.
    let body = if grouped.is_empty() {
        None
    } else if grouped.len() == 1
        && let Some(Part::Binary(b)) = grouped.get(inline_key)
    {
        Some((*b).clone())
    } else {
        // The multipart form takes these two headers; a part under either name would collide
        // with them when decoded.
        if let Some(k) = grouped.keys().find(|k| {
            let first = k.split('/').find(|s| !s.is_empty()).unwrap_or(k);
            matches!(first, "content-type" | "body-keys")
        }) {
            return Err(Error::Unencodable(format!(
                "the key {k:?} cannot be a body part of a multipart message"
            )));
        }
        let (body, boundary, body_keys) = multipart(&grouped, inline_key);
        headers.insert("body-keys".into(), Bytes::from(body_keys));
        headers.insert(
            "content-type".into(),
            Bytes::from(format!("multipart/form-data; boundary=\"{boundary}\"")),
        );
        Some(Bytes::from(body))
    };

    // 7. The content digest.
    if let Some(b) = &body
        && !b.is_empty()
    {
        headers.insert("content-digest".into(), content_digest(b));
    }

    // 8. Signatures travel from the HMAC commitment, which lists every signer.
    if let Some(commitments) = tabm.commitments() {
        for (_, c) in commitments.iter() {
            let Value::Message(c) = c else { continue };
            if c.get_str("alg") == Some("hmac-sha256") {
                for name in ["signature", "signature-input"] {
                    if let Some(Value::Binary(b)) = c.get(name) {
                        headers.insert(name.into(), b.clone());
                    }
                }
            }
            for (k, v) in c.iter() {
                if k.as_str().starts_with("hashpath")
                    && let Value::Binary(b) = v
                {
                    headers.insert(k.as_str().to_owned(), b.clone());
                }
            }
        }
    }

    Ok(HttpMessage { headers, body })
}

/// `sha-256=:<base64(sha256(body))>:`.
pub fn content_digest(body: &[u8]) -> Bytes {
    use base64::Engine as _;
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(56);
    out.push_str("sha-256=:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut out);
    out.push(':');
    Bytes::from(out)
}

/// Whether a binary can be written as a header line inside a multipart part: CR and LF would
/// end the line (HyperBEAM writes such values as they are, and the part no longer decodes to
/// the same message; we fix that).
fn part_header_safe(b: &[u8]) -> bool {
    !b.iter().any(|&c| c == b'\r' || c == b'\n')
}

fn group_maps<'a>(
    entries: &mut dyn Iterator<Item = (&'a str, &'a Value)>,
    parent: &str,
    top: &mut BTreeMap<String, Part<'a>>,
    depth: usize,
) -> Result<()> {
    if depth > crate::codec::structured::MAX_DEPTH {
        return Err(Error::TooDeep(crate::codec::structured::MAX_DEPTH));
    }
    let full = |k: &str| {
        if parent.is_empty() {
            k.to_owned()
        } else {
            let mut s = String::with_capacity(parent.len() + 1 + k.len());
            s.push_str(parent);
            s.push('/');
            s.push_str(k);
            s
        }
    };
    let mut flat: Vec<(&'a str, &'a Bytes)> = Vec::new();
    for (k, v) in entries {
        match v {
            Value::Message(m) => {
                group_maps(
                    &mut m.iter().map(|(k, v)| (k.as_str(), v)),
                    &full(k),
                    top,
                    depth + 1,
                )?;
            }
            // A value that cannot be a part header line (too long, or holding CR or LF, as a
            // raw signature may) is a part of its own, its bytes the part's body. A level's
            // `body` is its part's body already.
            Value::Binary(b)
                if b.len() > MAX_HEADER_LENGTH || (k != "body" && !part_header_safe(b)) =>
            {
                top.insert(full(k), Part::Binary(b));
            }
            Value::Binary(b) => flat.push((k, b)),
            other => {
                return Err(Error::Unencodable(format!(
                    "httpsig@1.0 takes a TABM; key {:?} holds a {}",
                    full(k),
                    other.kind()
                )));
            }
        }
    }
    if !flat.is_empty() {
        if parent.is_empty() {
            for (k, v) in flat {
                top.insert(k.to_owned(), Part::Binary(v));
            }
        } else {
            top.insert(parent.to_owned(), Part::Map(flat));
        }
    }
    Ok(())
}

fn multipart(grouped: &BTreeMap<String, Part<'_>>, inline_key: &str) -> (Vec<u8>, String, Vec<u8>) {
    // All parts are written into one buffer; `ends` marks where each ends.
    let mut parts: Vec<u8> = Vec::with_capacity(256);
    let mut ends: Vec<usize> = Vec::with_capacity(grouped.len());
    let mut body_keys = Vec::new();
    for (name, part) in grouped {
        if !body_keys.is_empty() {
            body_keys.extend_from_slice(b", ");
        }
        sf::write_string(&mut body_keys, name.as_bytes());
        let body_only = matches!(part, Part::Map(m) if m.len() == 1 && m[0].0 == "body");
        // A level holding only `body` becomes part `<name>/body`, never the inline part.
        let is_inline = !body_only && name == inline_key;
        let write_disposition = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"content-disposition: ");
            if is_inline {
                out.extend_from_slice(b"inline");
            } else {
                out.extend_from_slice(b"form-data;name=\"");
                // A quoted string: `"` and `\` escaped (HyperBEAM writes them raw, which no
                // parser reads back); every other name is written byte for byte.
                for &b in name.as_bytes() {
                    if matches!(b, b'"' | b'\\') {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                if body_only {
                    out.extend_from_slice(b"/body");
                }
                out.push(b'"');
            }
        };
        match part {
            Part::Map(m) => {
                // Header lines in key order, `content-disposition` among them; `body` last.
                let mut first = true;
                let mut disposition_written = false;
                let mut body: Option<&Bytes> = None;
                for &(k, v) in m {
                    if k == "body" {
                        body = Some(v);
                        continue;
                    }
                    if !disposition_written && k.as_bytes() > b"content-disposition".as_slice() {
                        if !first {
                            parts.extend_from_slice(b"\r\n");
                        }
                        write_disposition(&mut parts);
                        disposition_written = true;
                        first = false;
                    }
                    if !first {
                        parts.extend_from_slice(b"\r\n");
                    }
                    parts.extend_from_slice(k.as_bytes());
                    parts.extend_from_slice(b": ");
                    parts.extend_from_slice(v);
                    first = false;
                }
                if !disposition_written {
                    if !first {
                        parts.extend_from_slice(b"\r\n");
                    }
                    write_disposition(&mut parts);
                }
                if let Some(b) = body.filter(|b| !b.is_empty()) {
                    parts.extend_from_slice(b"\r\n\r\n");
                    parts.extend_from_slice(b);
                }
            }
            Part::Binary(b) => {
                write_disposition(&mut parts);
                parts.extend_from_slice(b"\r\n\r\n");
                parts.extend_from_slice(b);
            }
        }
        ends.push(parts.len());
    }
    let mut hasher = Sha256::new();
    let mut start = 0;
    for (n, &end) in ends.iter().enumerate() {
        if n > 0 {
            hasher.update(b"\r\n");
        }
        hasher.update(&parts[start..end]);
        start = end;
    }
    let boundary = b64u(&hasher.finalize());
    let mut body =
        Vec::with_capacity(parts.len() + ends.len() * (boundary.len() + 8) + boundary.len() + 8);
    let mut start = 0;
    for (n, &end) in ends.iter().enumerate() {
        if n > 0 {
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&parts[start..end]);
        start = end;
    }
    body.extend_from_slice(b"\r\n--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--");
    (body, boundary, body_keys)
}

/// Decodes an HTTP message into a TABM (spec §5.2.3). Signatures become commitments and an HMAC
/// commitment is added when there are signatures.
pub fn decode(http: &HttpMessage) -> Result<Message> {
    let body = http.body.clone().unwrap_or_default();
    let inline_key = match http.headers.get("inline-body-key") {
        Some(k) => String::from_utf8_lossy(k).into_owned(),
        None => "body".to_owned(),
    };
    let mut flat_entries: Vec<(String, Value)> = Vec::new();
    for (name, value) in &http.headers {
        if matches!(name.as_str(), "body" | "body-keys") {
            continue;
        }
        flat_entries.push((name.clone(), Value::Binary(value.clone())));
    }
    if !body.is_empty() {
        let boundary = match http.headers.get("content-type") {
            Some(ct) => multipart_boundary(ct),
            None => None,
        };
        match boundary {
            Some(boundary) => {
                let (parts, body_keys) = parse_multipart(&body, &boundary, &inline_key)?;
                flat_entries.extend(parts);
                if !body_keys.is_empty() {
                    flat_entries.push(("body-keys".into(), Value::Binary(Bytes::from(body_keys))));
                }
            }
            None => flat_entries.push((inline_key, Value::Binary(body))),
        }
    }
    let mut msg = flat::unflatten(flat_entries)?;
    reject_control_keys(&msg)?;

    // ID-shaped keys come back from `ao-ids`.
    if let Some(Value::Binary(ids)) = msg.remove("ao-ids") {
        for (k, member) in sf::parse_dictionary(&ids)? {
            let v = match member.as_item().map(|i| &i.bare) {
                Some(BareItem::String(s)) => Bytes::from(s.clone()),
                Some(BareItem::Token(t)) => Bytes::from(t.clone().into_bytes()),
                _ => {
                    return Err(Error::malformed(
                        "httpsig@1.0",
                        "ao-ids member is not a string",
                    ));
                }
            };
            msg.fields_mut().insert(Key::new(&k), Value::Binary(v));
        }
    }

    let signature = msg.remove("signature");
    let signature_input = msg.remove("signature-input");
    msg.remove("commitments");
    msg.remove("content-digest");
    let hashpaths: Vec<(Key, Value)> = msg
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("hashpath"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, _) in &hashpaths {
        msg.fields_mut().remove(k);
    }

    if let (Some(Value::Binary(sig)), Some(Value::Binary(input))) = (signature, signature_input) {
        let commitments = crate::commitment::commitments_from_headers(&sig, &input, &hashpaths)?;
        if !commitments.is_empty() {
            msg.insert("commitments", Value::Message(commitments));
            msg = crate::commitment::reset_hmac(&msg)?;
        }
    }
    Ok(msg)
}

/// A key with a control character (a byte below 0x20, or 0x7f) has no HTTP form: no header
/// name, multipart part name or structured-field string can carry it. Refused on decode, so
/// whatever decodes can be encoded and read back.
fn reject_control_keys(msg: &Message) -> Result<()> {
    for (k, v) in msg.iter() {
        if k.as_str().bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(Error::malformed(
                "httpsig@1.0",
                format!("the key {:?} contains a control character", k.as_str()),
            ));
        }
        if let Value::Message(m) = v {
            reject_control_keys(m)?;
        }
    }
    Ok(())
}

fn multipart_boundary(content_type: &[u8]) -> Option<String> {
    let item = sf::parse_item(content_type).ok().or_else(|| {
        // `multipart/form-data; boundary=…` has a space after `;`, which strict SF rejects
        // in parameters only after the bare item; retry without it.
        let text: Vec<u8> = content_type
            .split(|&b| b == b';')
            .map(|p| p.trim_ascii())
            .collect::<Vec<_>>()
            .join(&b';');
        sf::parse_item(&text).ok()
    })?;
    item.params.iter().find_map(|(k, v)| {
        (k == "boundary").then(|| v.as_text().map(|t| String::from_utf8_lossy(t).into_owned()))?
    })
}

type Parts = (Vec<(String, Value)>, Vec<u8>);

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

fn parse_multipart(body: &[u8], boundary: &str, inline_key: &str) -> Result<Parts> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(Error::Multipart("the boundary must be 1 to 70 bytes long"));
    }
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--");
    let start =
        find(body, open.as_bytes()).ok_or(Error::Multipart("no opening boundary"))? + open.len();
    let end = rfind(body, close.as_bytes()).ok_or(Error::Multipart("no closing boundary"))?;
    if end < start {
        return Err(Error::Multipart("closing boundary before the first part"));
    }
    let inner = &body[start..end];
    let delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    let mut seen_keys: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for raw in split(inner, delimiter.as_bytes()) {
        let raw = raw.strip_prefix(b"\r\n").unwrap_or(raw);
        let (head, part_body) = match find(raw, b"\r\n\r\n") {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => (raw, &[][..]),
        };
        let mut disposition = None;
        let mut fields: BTreeMap<String, Bytes> = BTreeMap::new();
        for line in split(head, b"\r\n") {
            if line.is_empty() {
                continue;
            }
            let Some(i) = find(line, b": ") else { continue };
            let name = std::str::from_utf8(&line[..i])
                .map_err(|_| Error::Multipart("part header name is not UTF-8"))?
                .to_ascii_lowercase();
            let value = Bytes::copy_from_slice(&line[i + 2..]);
            if name == "content-disposition" {
                disposition = Some(value);
            } else {
                fields.insert(name, value);
            }
        }
        let disposition =
            disposition.ok_or(Error::Multipart("part without content-disposition"))?;
        let name = match sf::parse_item(&disposition)
            .or_else(|_| sf::parse_item(&normalise_disposition(&disposition)))
        {
            Ok(item) => match &item.bare {
                BareItem::Token(t) if t == "inline" => inline_key.to_owned(),
                _ => item
                    .params
                    .iter()
                    .find(|(k, _)| k == "name")
                    .and_then(|(_, v)| v.as_text())
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .ok_or(Error::Multipart("part without a name"))?,
            },
            // A name with bytes a structured-field string cannot hold (control characters,
            // UTF-8): read the quoted name byte for byte.
            Err(_) => raw_disposition_name(&disposition)
                .ok_or(Error::Multipart("malformed content-disposition"))?,
        };
        let first = name
            .split('/')
            .find(|s| !s.is_empty())
            .unwrap_or(&name)
            .to_owned();
        if seen.insert(first.clone()) {
            seen_keys.push(first);
        }
        let value = if fields.is_empty() {
            Value::Binary(Bytes::copy_from_slice(part_body))
        } else {
            let mut m = Message::new();
            for (k, v) in fields {
                m.fields_mut().insert(Key::new(&k), Value::Binary(v));
            }
            if !part_body.is_empty() {
                m.fields_mut().insert(
                    Key::new("body"),
                    Value::Binary(Bytes::copy_from_slice(part_body)),
                );
            }
            Value::Message(m)
        };
        parts.push((name, value));
    }
    let mut body_keys = Vec::new();
    for (n, k) in seen_keys.iter().enumerate() {
        if n > 0 {
            body_keys.extend_from_slice(b", ");
        }
        sf::write_string(&mut body_keys, k.as_bytes());
    }
    Ok((parts, body_keys))
}

/// `form-data; name="x"` (with a space, as browsers and aoconnect write it) → `form-data;name="x"`.
/// `form-data; name="…"` with any bytes between the quotes (`\\x` is `x`), as UTF-8.
fn raw_disposition_name(d: &[u8]) -> Option<String> {
    let rest = d.strip_prefix(b"form-data")?.trim_ascii_start();
    let rest = rest.strip_prefix(b";")?.trim_ascii_start();
    let rest = rest.strip_prefix(b"name=\"")?;
    let mut name = Vec::with_capacity(rest.len());
    let mut bytes = rest.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => name.push(*bytes.next()?),
            b'"' => {
                return bytes
                    .as_slice()
                    .trim_ascii()
                    .is_empty()
                    .then(|| String::from_utf8(name).ok())?;
            }
            _ => name.push(b),
        }
    }
    None
}

fn normalise_disposition(d: &[u8]) -> Vec<u8> {
    d.split(|&b| b == b';')
        .map(|p| p.trim_ascii())
        .collect::<Vec<_>>()
        .join(&b';')
}

/// The first occurrence of a non-empty needle (linear time: memchr's two-way search).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

/// The last occurrence of a non-empty needle (linear time).
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::rfind(hay, needle)
}

fn split<'a>(mut hay: &'a [u8], delim: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match find(hay, delim) {
            Some(i) => {
                let part = &hay[..i];
                hay = &hay[i + delim.len()..];
                Some(part)
            }
            None => {
                done = true;
                Some(hay)
            }
        }
    })
}
