//! Message IDs (spec §4.2–§4.4).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::codec::{httpsig, structured};
use crate::util::decode_id;
use crate::{Error, Message, Result, Value};

/// Names rendered as derived components (`@name`) in signature component lists (spec §5.2.8).
pub const DERIVED_COMPONENTS: [&str; 9] = [
    "method",
    "target-uri",
    "authority",
    "scheme",
    "request-target",
    "path",
    "query",
    "query-param",
    "status",
];

/// Whether `name` is a derived component name.
pub fn is_derived(name: &str) -> bool {
    DERIVED_COMPONENTS.contains(&name)
}

/// Which commitments an ID covers (spec §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdScope {
    /// No commitment: the unsigned ID (`id(M, none)`), an HMAC over the content.
    Unsigned,
    /// Only commitments that name a committer, i.e. signatures (`id(M, all)`). This is the ID
    /// processes and messages are known by on the scheduler.
    Signed,
    /// Every commitment including HMACs (`id(M)`, HyperBEAM's default; used by the cache and by
    /// hashpaths).
    All,
}

/// The ID of a message as 32 bytes.
pub fn id(msg: &Message, scope: IdScope) -> Result<[u8; 32]> {
    let selected: Vec<&str> = match (scope, msg.commitments()) {
        (IdScope::Unsigned, _) | (_, None) => Vec::new(),
        (IdScope::All, Some(c)) => c.keys().map(|k| k.as_str()).collect(),
        (IdScope::Signed, Some(c)) => c
            .iter()
            .filter(|(_, v)| matches!(v, Value::Message(m) if m.contains("committer")))
            .map(|(k, _)| k.as_str())
            .collect(),
    };
    match selected.len() {
        0 => unsigned_id(msg),
        1 => decode_id(selected[0]).ok_or_else(|| {
            Error::Commitment(format!(
                "commitment ID {:?} is not a 43-character ID",
                selected[0]
            ))
        }),
        _ => {
            let mut ids = selected;
            ids.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            Ok(Sha256::digest(ids.join(", ").as_bytes()).into())
        }
    }
}

/// The ID of a message in its human (43-character base64url) form.
pub fn id_string(msg: &Message, scope: IdScope) -> Result<String> {
    Ok(crate::util::b64u(&id(msg, scope)?))
}

/// The unsigned ID: `HMAC-SHA256("ao", signature base of the httpsig encoding)` (spec §4.4).
/// Memoised in the message.
pub fn unsigned_id(msg: &Message) -> Result<[u8; 32]> {
    msg.cached_unsigned_id(|| {
        let mut tabm = structured::to_tabm(msg)?;
        {
            let fields = tabm.fields_mut();
            fields.remove("commitments");
            if let Some(v) = fields.remove("signature-input") {
                fields.insert(crate::Key::new("x-signature-input"), v);
            }
        }
        let http = httpsig::encode(&tabm)?;
        let comps = hmac_components(http.headers.keys().map(String::as_str));
        Ok(hmac_over(&http, &comps))
    })
}

/// The HMAC component list: every header except `body-keys`, `@`-prefixed when derived, sorted
/// after prefixing (spec §4.4).
pub fn hmac_components<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut comps: Vec<String> = names
        .filter(|n| *n != "body-keys")
        .map(|n| {
            if is_derived(n) {
                format!("@{n}")
            } else {
                n.to_owned()
            }
        })
        .collect();
    comps.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    comps
}

/// `HMAC-SHA256("ao", base)` over the given components of an encoded message.
pub fn hmac_over(http: &httpsig::HttpMessage, comps: &[String]) -> [u8; 32] {
    let base = signature_base(comps, http, &[("alg", "hmac-sha256"), ("keyid", "ao")]);
    let mut mac = Hmac::<Sha256>::new_from_slice(b"ao").expect("HMAC takes any key length");
    mac.update(&base);
    mac.finalize().into_bytes().into()
}

/// HyperBEAM's signature base (spec §4.4): one `"name": value` line per component (derived
/// components without their `@`, values from the message's fields), then the
/// `@signature-params` line with the parameters in the order given.
pub fn signature_base(
    comps: &[String],
    http: &httpsig::HttpMessage,
    params: &[(&str, &str)],
) -> Vec<u8> {
    let mut base = Vec::with_capacity(256);
    if comps.is_empty() {
        // The empty message's base starts with a bare LF (spec §11 item 21).
        base.push(b'\n');
    }
    for c in comps {
        let name = c.strip_prefix('@').unwrap_or(c);
        base.push(b'"');
        base.extend_from_slice(name.as_bytes());
        base.extend_from_slice(b"\": ");
        if let Some(v) = http.headers.get(name) {
            field_value(&mut base, v);
        }
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    write_params_line(&mut base, comps, params);
    base
}

/// `("c1" "c2");k="v";…` — component names lower-cased, parameters as given.
pub fn write_params_line(out: &mut Vec<u8>, comps: &[String], params: &[(&str, &str)]) {
    out.push(b'(');
    for (n, c) in comps.iter().enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        out.push(b'"');
        out.extend_from_slice(c.to_ascii_lowercase().as_bytes());
        out.push(b'"');
    }
    out.push(b')');
    for (k, v) in params {
        out.push(b';');
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        let integer = matches!(*k, "created" | "expired")
            && !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit());
        if integer {
            out.extend_from_slice(v.as_bytes());
        } else {
            crate::sf::write_string(out, v.as_bytes());
        }
    }
}

/// A field value in a signature base: ASCII spaces trimmed, LF replaced by a space.
fn field_value(out: &mut Vec<u8>, v: &[u8]) {
    let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    out.extend(
        v[start..end]
            .iter()
            .map(|&b| if b == b'\n' { b' ' } else { b }),
    );
}
