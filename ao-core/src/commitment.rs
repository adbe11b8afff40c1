//! Commitments as they travel in httpsig headers, and the HMAC commitment (spec §4.1, §4.5).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::codec::{httpsig, structured};
use crate::id::{hmac_components, hmac_over, is_derived};
use crate::sf::{self, BareItem, Member};
use crate::util::{b64u, b64u_decode};
use crate::{Error, Key, Message, Result, Value};

/// The commitment device of HTTP message signatures.
pub const HTTPSIG_DEVICE: &str = "httpsig@1.0";

/// Builds one commitment per member of the `signature` dictionary (spec §5.2.3 step 6): ID =
/// `b64u(sha256(sig))`, committer = `b64u(sha256(keyid bytes))`.
pub fn commitments_from_headers(
    signature: &[u8],
    signature_input: &[u8],
    hashpaths: &[(Key, Value)],
) -> Result<Message> {
    let sigs = sf::parse_dictionary(signature)?;
    let inputs = sf::parse_dictionary(signature_input)?;
    let mut out = Message::new();
    for (name, member) in sigs {
        let sig = match member.as_item().map(|i| &i.bare) {
            Some(BareItem::Bytes(b)) => b.clone(),
            _ => {
                return Err(Error::Commitment(format!(
                    "signature {name:?} is not a byte sequence"
                )));
            }
        };
        let (_, input) = inputs.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            Error::Commitment(format!("signature {name:?} has no signature-input"))
        })?;
        let Member::InnerList(components, params) = input else {
            return Err(Error::Commitment(format!(
                "signature-input {name:?} is not an inner list"
            )));
        };
        let param = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v);
        let alg = param("alg")
            .and_then(BareItem::as_text)
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        let keyid = param("keyid")
            .and_then(BareItem::as_text)
            .ok_or_else(|| Error::Commitment(format!("signature-input {name:?} has no keyid")))?;
        let key_bytes = b64u_decode(keyid)
            .ok_or_else(|| Error::Commitment(format!("keyid of {name:?} is not base64url")))?;
        let mut c = Message::new()
            .with("commitment-device", HTTPSIG_DEVICE)
            .with("alg", alg)
            .with("committer", b64u(&Sha256::digest(&key_bytes)))
            .with(
                "signature",
                Bytes::from(sf::serialize_dictionary(&[(name.clone(), member.clone())])),
            )
            .with(
                "signature-input",
                Bytes::from(sf::serialize_dictionary(&[(name.clone(), input.clone())])),
            );
        for item in components {
            if let Some(t) = item.bare.as_text()
                && let Some((k, v)) = hashpaths.iter().find(|(k, _)| k.as_str().as_bytes() == t)
            {
                c.insert(k.clone(), v.clone());
            }
        }
        out.insert(Key::new(&b64u(&Sha256::digest(&sig))), c);
    }
    Ok(out)
}

/// Recomputes the HMAC commitment of a message (spec §4.5): drops existing HMAC commitments,
/// merges the signature dictionaries of the others, and keys a new HMAC commitment by its ID.
pub fn reset_hmac(msg: &Message) -> Result<Message> {
    let commitments = msg.commitments().cloned().unwrap_or_default();
    let mut kept = Message::new();
    let mut sigs: Vec<(String, Member)> = Vec::new();
    let mut inputs: Vec<(String, Member)> = Vec::new();
    for (id, c) in commitments.iter() {
        let Value::Message(cm) = c else { continue };
        if cm.get_str("alg") == Some("hmac-sha256")
            && cm.get_str("commitment-device") == Some(HTTPSIG_DEVICE)
        {
            continue;
        }
        kept.fields_mut().insert(id.clone(), c.clone());
        if let (Some(Value::Binary(s)), Some(Value::Binary(i))) =
            (cm.get("signature"), cm.get("signature-input"))
            && let (Ok(mut s), Ok(mut i)) = (sf::parse_dictionary(s), sf::parse_dictionary(i))
            && !s.is_empty()
            && !i.is_empty()
        {
            sigs.push(s.swap_remove(0));
            inputs.push(i.swap_remove(0));
        }
    }
    sigs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    inputs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

    let content = msg.clone().without("commitments");
    let http = httpsig::encode(&structured::to_tabm(&content)?)?;
    let comps = match inputs.first() {
        Some((_, Member::InnerList(items, _))) => {
            let mut comps: Vec<String> = items
                .iter()
                .filter_map(|i| i.bare.as_text())
                .map(|t| {
                    let name = String::from_utf8_lossy(t);
                    let name = name.strip_prefix('@').unwrap_or(&name).to_ascii_lowercase();
                    if is_derived(&name) {
                        format!("@{name}")
                    } else {
                        name
                    }
                })
                .collect();
            comps.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            comps
        }
        _ => hmac_components(http.headers.keys().map(String::as_str)),
    };
    let id = hmac_over(&http, &comps);
    let mut hmac = Message::new()
        .with("commitment-device", HTTPSIG_DEVICE)
        .with("alg", "hmac-sha256");
    if !sigs.is_empty() {
        hmac.insert("signature", Bytes::from(sf::serialize_dictionary(&sigs)));
        hmac.insert(
            "signature-input",
            Bytes::from(sf::serialize_dictionary(&inputs)),
        );
    }
    kept.insert(Key::new(&b64u(&id)), hmac);
    Ok(msg.clone().with("commitments", kept))
}

/// The keys a message's signatures cover (spec §4.8): the intersection over its signature
/// commitments of each one's covered keys. An unsigned message has every key committed.
///
/// As in HyperBEAM the lists name wire-level keys too (`signature`, `signature-input`,
/// `ao-types`, `body-keys` entries), whether or not the message has them.
pub fn committed_keys(msg: &Message) -> Result<Vec<Key>> {
    let Some(commitments) = msg.commitments() else {
        return Ok(msg.keys().cloned().collect());
    };
    let mut result: Option<Vec<Key>> = None;
    for (id, c) in commitments.iter() {
        let Value::Message(c) = c else { continue };
        if !c.contains("committer") {
            continue;
        }
        let keys = match c.get_str("commitment-device") {
            Some(HTTPSIG_DEVICE) => httpsig_committed(msg, c)?,
            Some(crate::ans104::DEVICE) => crate::ans104::codec::committed_keys(msg, id.as_str())?,
            _ => msg
                .keys()
                .filter(|k| k.as_str() != "commitments")
                .cloned()
                .collect(),
        };
        result = Some(match result {
            None => keys,
            Some(prev) => prev.into_iter().filter(|k| keys.contains(k)).collect(),
        });
    }
    Ok(result.unwrap_or_else(|| msg.keys().cloned().collect()))
}

fn httpsig_committed(msg: &Message, c: &Message) -> Result<Vec<Key>> {
    let Some(Value::Binary(input)) = c.get("signature-input") else {
        return Ok(Vec::new());
    };
    let dict = sf::parse_dictionary(input)?;
    let mut keys: Vec<Key> = vec![Key::new("signature"), Key::new("signature-input")];
    let Some((_, Member::InnerList(items, _))) = dict.first() else {
        return Ok(keys);
    };
    let names: Vec<String> = items
        .iter()
        .filter_map(|i| i.bare.as_text())
        .map(|t| {
            String::from_utf8_lossy(t)
                .trim_start_matches('@')
                .to_ascii_lowercase()
        })
        .collect();
    for n in &names {
        keys.push(Key::new(n));
    }
    let tabm = structured::to_tabm(&msg.clone().without("commitments"))?;
    if names.iter().any(|n| n == "ao-types")
        && let Some(Value::Binary(types)) = tabm.get("ao-types")
    {
        for (k, m) in sf::parse_dictionary(types)? {
            if let Some(t) = m.as_item().and_then(|i| i.bare.as_text())
                && matches!(t, b"empty-binary" | b"empty-list" | b"empty-message")
            {
                keys.push(Key::from_utf8(&crate::escape::decode(k.as_bytes()))?);
            }
        }
    }
    if names.iter().any(|n| n == "content-digest") {
        keys.push(Key::new("body"));
        keys.push(Key::new("inline-body-key"));
        if let Some(ik) = tabm.get_str("inline-body-key") {
            keys.push(Key::new(ik));
        }
        if let Some(Value::Binary(bk)) = msg.get("body-keys") {
            for m in sf::parse_list(bk)? {
                if let Some(t) = m.as_item().and_then(|i| i.bare.as_text()) {
                    let s = String::from_utf8_lossy(t);
                    keys.push(Key::new(s.split('/').find(|x| !x.is_empty()).unwrap_or(&s)));
                }
            }
        } else {
            let http = httpsig::encode(&tabm)?;
            if let Some(bk) = http.header("body-keys") {
                for m in sf::parse_list(bk)? {
                    if let Some(t) = m.as_item().and_then(|i| i.bare.as_text()) {
                        let s = String::from_utf8_lossy(t);
                        keys.push(Key::new(s.split('/').find(|x| !x.is_empty()).unwrap_or(&s)));
                    }
                }
            }
            if http.body.is_some()
                && !tabm.contains("inline-body-key")
                && !tabm.contains("body")
                && tabm.contains("data")
            {
                keys.push(Key::new("data"));
            }
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The message with only its committed keys (and `commitments`), as HyperBEAM's
/// `with_only_committed` (spec §4.8). An uncommitted message is returned unchanged. The
/// signatures are not checked: verify first.
pub fn with_only_committed(msg: &Message) -> Result<Message> {
    if !msg.is_committed() {
        return Ok(msg.clone());
    }
    let keys = committed_keys(msg)?;
    let mut out = msg.clone();
    let drop: Vec<Key> = msg
        .keys()
        .filter(|k| k.as_str() != "commitments" && !keys.contains(k))
        .cloned()
        .collect();
    if !drop.is_empty() {
        let fields = out.fields_mut();
        for k in drop {
            fields.remove(&k);
        }
    }
    Ok(out)
}
