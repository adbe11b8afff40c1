//! `ans104@1.0` ⇄ TABM, as HyperBEAM's `dev_codec_ans104` does it (spec §5.5.3–§5.5.4).
//!
//! Quirks kept for compatibility: tag names are normalised into keys and the original names
//! are kept in an `original-tags` commitment field when any was not already normal; unsigned
//! items with such tags get an `unsigned` commitment keyed by the all-zero ID; nested maps
//! travel as HyperBEAM's private bundle format (lowercase `bundle-format` / `bundle-version`,
//! a `bundle-map` manifest, items indexed by *unsigned* ID). One deliberate difference:
//! `original-tags` is also kept when tag names repeat, so such items re-encode to the bytes
//! that were signed (HyperBEAM loses them and cannot verify such items after decoding).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::avro::Tag;
use super::item::{DataItem, SignatureType};
use super::{Ans104Error, DEVICE};
use crate::codec::structured::{self, MAX_DEPTH};
use crate::sf;
use crate::util::{b64u, b64u_decode};
use crate::verify::VerifyError;
use crate::wallet::{EthWallet, Wallet};
use crate::{Error, Key, Message, Result, Value};

/// Keys that are record fields of the item rather than tags. `format`, `id`, `unsigned_id`
/// and `tags` are consumed and dropped (IDs are recomputed).
const TX_FIELDS: [&str; 9] = [
    "format",
    "id",
    "unsigned_id",
    "last_tx",
    "owner",
    "tags",
    "target",
    "data",
    "signature",
];

/// Tags HyperBEAM adds for nested bundles; dropped on decode.
const BUNDLE_TAGS: [&str; 3] = ["bundle-format", "bundle-map", "bundle-version"];

/// Keys always committed by an ANS-104 signature (besides the tags).
pub const COMMITTED_FIELDS: [&str; 6] = ["id", "last_tx", "owner", "target", "signature", "data"];

/// Longest value that becomes a tag rather than a bundle member.
pub const MAX_TAG_VALUE_IN_TAG: usize = 128;

/// The `alg` of an ANS-104 commitment for a signature type.
pub fn alg_name(t: SignatureType) -> &'static str {
    match t {
        SignatureType::Arweave => "rsa-pss",
        SignatureType::Ethereum => "ecdsa-secp256k1",
    }
}

fn unencodable(reason: impl Into<String>) -> Error {
    Error::Ans104(Ans104Error::Unencodable(reason.into()))
}

fn bundle_err(reason: impl Into<String>) -> Error {
    Error::Ans104(Ans104Error::Bundle(reason.into()))
}

/// Converts a message to a data item (structured → TABM → item).
pub fn to_item(msg: &Message) -> Result<DataItem> {
    tabm_to_item(&structured::to_tabm(msg)?, 0)
}

/// Serialises a message as a data item.
pub fn encode(msg: &Message) -> Result<Vec<u8>> {
    Ok(to_item(msg)?.serialize())
}

/// Parses a data item and converts it to a message.
pub fn decode(bytes: &Bytes) -> Result<Message> {
    from_item(&DataItem::parse(bytes)?)
}

/// Converts a data item to a message (item → TABM → structured).
pub fn from_item(item: &DataItem) -> Result<Message> {
    match item_to_tabm(item, 0)? {
        Value::Message(m) => structured::from_tabm(&m),
        _ => Err(Error::malformed(
            DEVICE,
            "the item is a bare binary (ao-type: binary), not a message",
        )),
    }
}

fn id_field(name: &str, v: &Value) -> Result<Option<[u8; 32]>> {
    let Value::Binary(b) = v else {
        return Err(unencodable(format!("{name} is not a binary")));
    };
    let raw = match b.len() {
        0 => return Ok(None),
        43 => b64u_decode(b).ok_or_else(|| unencodable(format!("{name} is not base64url")))?,
        _ => b.to_vec(),
    };
    <[u8; 32]>::try_from(raw)
        .map(Some)
        .map_err(|_| unencodable(format!("{name} is not a 32-byte ID")))
}

fn original_tags(v: &Value) -> Result<Vec<Tag>> {
    let Value::Message(m) = v else {
        return Err(unencodable("original-tags is not a map"));
    };
    let mut out = Vec::with_capacity(m.len());
    for i in 1..=m.len() {
        let entry = m
            .get_message(&i.to_string())
            .ok_or_else(|| unencodable(format!("original-tags entry {i} missing")))?;
        let text = |k: &str| match entry.get(k) {
            Some(Value::Binary(b)) => Ok(b.clone()),
            // An empty value travels as an `ao-types` annotation in TABM form.
            None => Ok(Bytes::new()),
            Some(_) => Err(unencodable(format!(
                "original-tags entry {i} {k} is not a binary"
            ))),
        };
        out.push(Tag::new(text("name")?, text("value")?));
    }
    Ok(out)
}

/// Normalised tag name → value, repeated names joined as an SF list of strings.
fn deduplicate(tags: &[Tag]) -> Result<BTreeMap<Key, Bytes>> {
    let mut grouped: BTreeMap<Key, Vec<&Bytes>> = BTreeMap::new();
    for t in tags {
        grouped
            .entry(Key::from_utf8(&t.name)?)
            .or_default()
            .push(&t.value);
    }
    Ok(grouped
        .into_iter()
        .map(|(k, vs)| {
            let v = if vs.len() == 1 {
                vs[0].clone()
            } else {
                let mut out = Vec::new();
                for (n, v) in vs.iter().enumerate() {
                    if n > 0 {
                        out.extend_from_slice(b", ");
                    }
                    sf::write_string(&mut out, v);
                }
                Bytes::from(out)
            };
            (k, v)
        })
        .collect())
}

fn binary_item(data: Bytes) -> DataItem {
    DataItem::new(vec![Tag::new("ao-type", "binary")], data)
}

/// HyperBEAM's `dev_codec_ans104:to/1` on a TABM.
pub fn tabm_to_item(tabm: &Message, depth: usize) -> Result<DataItem> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let mut fields: BTreeMap<Key, Value> = tabm
        .iter()
        .filter(|(k, _)| k.as_str() != "commitments")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // 1. A single commitment's fields (owner, signature, original-tags…) join the map.
    if let Some(comms) = tabm.get("commitments") {
        let Value::Message(comms) = comms else {
            return Err(unencodable("commitments is not a map"));
        };
        match comms.len() {
            0 => {}
            1 => {
                let Some((_, Value::Message(c))) = comms.iter().next() else {
                    return Err(unencodable("a commitment is not a map"));
                };
                for (k, v) in c.iter() {
                    if !matches!(k.as_str(), "commitment-device" | "committer" | "alg") {
                        fields.insert(k.clone(), v.clone());
                    }
                }
            }
            _ => {
                return Err(unencodable(
                    "multiple signatures are not supported by ANS-104",
                ));
            }
        }
    }
    // 2. Original tags.
    let originals = match fields.remove("original-tags") {
        Some(v) => original_tags(&v)?,
        None => Vec::new(),
    };
    // 3–4. Record fields.
    let (mut owner, mut signature, mut target, mut anchor, mut data) =
        (None, None, None, None, None);
    for f in TX_FIELDS {
        let Some(v) = fields.remove(f) else { continue };
        match f {
            "last_tx" => anchor = id_field(f, &v)?,
            "target" => target = id_field(f, &v)?,
            "owner" | "signature" => {
                let Value::Binary(b) = v else {
                    return Err(unencodable(format!("{f} is not a binary")));
                };
                if f == "owner" {
                    owner = Some(b);
                } else {
                    signature = Some(b);
                }
            }
            "data" => data = Some(v),
            _ => {}
        }
    }
    // 5. Tags and bundle members.
    let mut tags_map: BTreeMap<Key, Bytes> = BTreeMap::new();
    let mut members: BTreeMap<Key, DataItem> = BTreeMap::new();
    for (k, v) in fields {
        match v {
            Value::Binary(b)
                if b.len() <= MAX_TAG_VALUE_IN_TAG && std::str::from_utf8(&b).is_ok() =>
            {
                tags_map.insert(k, b);
            }
            Value::Binary(b) => {
                members.insert(k, binary_item(b));
            }
            Value::Message(m) => {
                members.insert(k, tabm_to_item(&m, depth + 1)?);
            }
            other => {
                return Err(unencodable(format!(
                    "key {k:?} holds a {}; ans104@1.0 takes a TABM",
                    other.kind()
                )));
            }
        }
    }
    // 6. Original tags restore names and order, if they agree with the keys.
    let mut tags = if originals.is_empty() {
        tags_map
            .into_iter()
            .map(|(k, v)| Tag::new(Bytes::copy_from_slice(k.as_str().as_bytes()), v))
            .collect()
    } else {
        if deduplicate(&originals)? != tags_map {
            return Err(unencodable(
                "original-tags do not match the message's keys (invalid_original_tags)",
            ));
        }
        originals
    };
    // 7. Data: raw, or a bundle of the members.
    let raw = match data {
        None => Bytes::new(),
        Some(Value::Binary(b)) => b,
        Some(Value::Message(m)) => {
            members.insert(Key::new("data"), tabm_to_item(&m, depth + 1)?);
            Bytes::new()
        }
        Some(other) => return Err(unencodable(format!("data holds a {}", other.kind()))),
    };
    let data = if members.is_empty() {
        raw
    } else {
        if !raw.is_empty() {
            members.insert(Key::new("data"), binary_item(raw));
        }
        let (bytes, manifest_id) = bundle(&members)?;
        tags = bundle_tags(tags, &manifest_id);
        Bytes::from(bytes)
    };
    let mut item = DataItem::new(tags, data);
    item.target = target;
    item.anchor = anchor;
    if let Some(owner) = owner {
        item.signature_type = match owner.len() {
            512 => SignatureType::Arweave,
            65 => SignatureType::Ethereum,
            n => return Err(unencodable(format!("owner of {n} bytes"))),
        };
        item.owner = owner;
        item.signature = Bytes::from(vec![0u8; item.signature_type.signature_len()]);
    }
    if let Some(sig) = signature {
        if sig.len() != item.signature_type.signature_len() {
            return Err(unencodable(format!(
                "signature of {} bytes for a {:?} owner",
                sig.len(),
                item.signature_type
            )));
        }
        item.signature = sig;
    }
    Ok(item)
}

/// `[bundle-format, bundle-version] ++ (tags − those) − bundle-map ++ [bundle-map]`.
fn bundle_tags(tags: Vec<Tag>, manifest_id: &[u8; 32]) -> Vec<Tag> {
    let fixed = [
        Tag::new("bundle-format", "binary"),
        Tag::new("bundle-version", "2.0.0"),
    ];
    let mut rest = tags;
    for f in &fixed {
        if let Some(i) = rest.iter().position(|t| t == f) {
            rest.remove(i);
        }
    }
    let mut out: Vec<Tag> = fixed.to_vec();
    out.extend(rest.into_iter().filter(|t| &t.name[..] != b"bundle-map"));
    out.push(Tag::new("bundle-map", b64u(manifest_id)));
    out
}

/// Serialises members as HyperBEAM's bundle: a manifest item (JSON `{key: unsigned id}`)
/// first, then the members in key order, indexed by unsigned ID. Returns the bundle bytes and
/// the manifest's unsigned ID.
fn bundle(members: &BTreeMap<Key, DataItem>) -> Result<(Vec<u8>, [u8; 32])> {
    let mut index = serde_json::Map::new();
    let mut entries: Vec<([u8; 32], Vec<u8>)> = Vec::with_capacity(members.len() + 1);
    for (k, item) in members {
        let id = item.unsigned_id();
        index.insert(k.as_str().to_owned(), serde_json::Value::String(b64u(&id)));
        entries.push((id, item.serialize()));
    }
    let json = serde_json::to_vec(&serde_json::Value::Object(index))
        .map_err(|e| unencodable(e.to_string()))?;
    let manifest = DataItem::new(
        vec![
            Tag::new("data-protocol", "bundle-map"),
            Tag::new("variant", "0.0.1"),
        ],
        json,
    );
    let manifest_id = manifest.unsigned_id();
    entries.insert(0, (manifest_id, manifest.serialize()));
    let total: usize = entries.iter().map(|(_, b)| b.len() + 64).sum::<usize>() + 32;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u256(entries.len()));
    for (id, bytes) in &entries {
        out.extend_from_slice(&u256(bytes.len()));
        out.extend_from_slice(id);
    }
    for (_, bytes) in entries {
        out.extend_from_slice(&bytes);
    }
    Ok((out, manifest_id))
}

fn u256(n: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&(n as u64).to_be_bytes());
    out
}

fn read_u256(b: &[u8]) -> Option<usize> {
    if b.len() != 32 || b[..24].iter().any(|&x| x != 0) {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[24..]);
    usize::try_from(u64::from_be_bytes(a)).ok()
}

fn first_tag<'a>(item: &'a DataItem, name: &str) -> Option<&'a Bytes> {
    item.tags
        .iter()
        .find(|t| &t.name[..] == name.as_bytes())
        .map(|t| &t.value)
}

/// Splits HyperBEAM bundle data into its items.
fn unbundle(data: &Bytes) -> Result<Vec<DataItem>> {
    if data.len() < 32 {
        return Err(bundle_err("no item count"));
    }
    let count = read_u256(&data[..32]).ok_or_else(|| bundle_err("absurd item count"))?;
    if count > (data.len() - 32) / 64 {
        return Err(bundle_err("item count exceeds the data"));
    }
    let header_end = 32 + count * 64;
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = 32 + i * 64;
        sizes.push(read_u256(&data[at..at + 32]).ok_or_else(|| bundle_err("absurd item size"))?);
    }
    let mut pos = header_end;
    let mut items = Vec::with_capacity(count);
    for size in sizes {
        let end = pos
            .checked_add(size)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| bundle_err("item size exceeds the data"))?;
        items.push(DataItem::parse(&data.slice(pos..end))?);
        pos = end;
    }
    if pos != data.len() {
        return Err(bundle_err("bytes after the last item"));
    }
    Ok(items)
}

fn normal_tags(tags: &[Tag]) -> bool {
    tags.iter()
        .all(|t| std::str::from_utf8(&t.name).is_ok_and(|n| crate::key::normalize(n) == n))
}

fn has_duplicate_names(tags: &[Tag]) -> bool {
    let mut names: Vec<&[u8]> = tags.iter().map(|t| &t.name[..]).collect();
    names.sort_unstable();
    names.windows(2).any(|w| w[0] == w[1]) || {
        // Names that differ only in case collide once normalised.
        let mut keys: Vec<String> = tags
            .iter()
            .filter_map(|t| std::str::from_utf8(&t.name).ok())
            .map(|n| crate::key::normalize(n).into_owned())
            .collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

fn tag_map(tags: &[Tag]) -> Message {
    let mut m = Message::new();
    for (i, t) in tags.iter().enumerate() {
        m.insert(
            Key::from(i + 1),
            Message::new()
                .with("name", t.name.clone())
                .with("value", t.value.clone()),
        );
    }
    m
}

/// HyperBEAM's `dev_codec_ans104:from/1`: an item to a TABM (or a bare binary for an item
/// tagged `ao-type: binary`).
pub fn item_to_tabm(item: &DataItem, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    if first_tag(item, "ao-type").is_some_and(|v| &v[..] == b"binary") {
        return Ok(Value::Binary(item.data.clone()));
    }
    let is_bundle = first_tag(item, "bundle-format").is_some_and(|v| &v[..] == b"binary")
        && first_tag(item, "bundle-version").is_some_and(|v| &v[..] == b"2.0.0");
    let mut msg = Message::new();
    if is_bundle {
        let map_id = first_tag(item, "bundle-map")
            .ok_or_else(|| bundle_err("a bundle without a bundle-map is not supported"))?;
        let map_id = b64u_decode(map_id).ok_or_else(|| bundle_err("bundle-map is not an ID"))?;
        let items = unbundle(&item.data)?;
        // Each item's unsigned ID once (a deep hash over the item), the first item of an ID
        // winning; and each item decoded at most once: a manifest naming one member under two
        // keys (or the manifest itself as a member) is refused, or nested bundles doing so at
        // each level would decode 2^depth members from a few kilobytes.
        let mut by_id: HashMap<[u8; 32], usize> = HashMap::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            by_id.entry(it.unsigned_id()).or_insert(i);
        }
        let mut used = vec![false; items.len()];
        let mut take = |id: &[u8]| {
            let i = <[u8; 32]>::try_from(id)
                .ok()
                .and_then(|id| by_id.get(&id).copied())
                .ok_or_else(|| bundle_err(format!("no item with unsigned ID {}", b64u(id))))?;
            if std::mem::replace(&mut used[i], true) {
                return Err(bundle_err(format!(
                    "the item with unsigned ID {} is named twice",
                    b64u(id)
                )));
            }
            Ok(&items[i])
        };
        let manifest = take(&map_id)?;
        let index: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&manifest.data)
                .map_err(|e| bundle_err(format!("manifest is not a JSON object: {e}")))?;
        for (k, v) in index {
            let id = v
                .as_str()
                .and_then(|s| b64u_decode(s.as_bytes()))
                .ok_or_else(|| bundle_err("manifest entry is not an ID"))?;
            let member = item_to_tabm(take(&id)?, depth + 1)?;
            msg.insert(Key::new(&k), member);
        }
    } else if !item.data.is_empty() {
        msg.insert("data", item.data.clone());
    }
    // Record fields, then tags (which win), then over the data.
    let signed = item.is_signed();
    let id_field = |v: Option<[u8; 32]>| v.map_or_else(Bytes::new, |i| Bytes::copy_from_slice(&i));
    let mut record = vec![
        ("id", Bytes::copy_from_slice(&item.id())),
        ("last_tx", id_field(item.anchor)),
        ("owner", item.owner.clone()),
        ("target", id_field(item.target)),
        ("signature", item.signature.clone()),
    ];
    if signed {
        record.retain(|(k, _)| !matches!(*k, "id" | "owner" | "signature"));
    }
    for (k, v) in record {
        msg.insert(k, v);
    }
    for (k, v) in deduplicate(&item.tags)? {
        msg.fields_mut().insert(k, Value::Binary(v));
    }
    let keep_originals = !normal_tags(&item.tags) || has_duplicate_names(&item.tags);
    if signed {
        for k in [
            "id",
            "owner",
            "signature",
            "commitment-device",
            "committer",
            "alg",
            "original-tags",
        ] {
            msg.remove(k);
        }
        let committer = item
            .committer()
            .ok_or_else(|| Error::malformed(DEVICE, "the owner is not a valid public key"))?;
        let mut c = Message::new()
            .with("commitment-device", DEVICE)
            .with("alg", alg_name(item.signature_type))
            .with("committer", committer)
            .with("owner", item.owner.clone())
            .with("signature", item.signature.clone());
        if keep_originals {
            c.insert("original-tags", tag_map(&item.tags));
        }
        msg.insert(
            "commitments",
            Message::new().with(Key::new(&b64u(&item.id())), c),
        );
    } else if keep_originals {
        // HyperBEAM keys this by the item's `id`, which is all zeros for an unsigned item.
        let c = Message::new()
            .with("commitment-device", DEVICE)
            .with("alg", "unsigned")
            .with("original-tags", tag_map(&item.tags));
        msg.insert(
            "commitments",
            Message::new().with(Key::new(&b64u(&[0u8; 32])), c),
        );
    }
    for k in BUNDLE_TAGS {
        msg.remove(k);
    }
    Ok(Value::Message(msg))
}

/// The commitment `commit` adds, and the message without other commitments.
fn signed_message(msg: &Message, item: &DataItem, originals: Option<Value>) -> Result<Message> {
    let committer = item
        .committer()
        .ok_or_else(|| Error::Internal("signed item without committer".into()))?;
    let mut c = Message::new()
        .with("commitment-device", DEVICE)
        .with("alg", alg_name(item.signature_type))
        .with("committer", committer)
        .with("owner", item.owner.clone())
        .with("signature", item.signature.clone());
    if let Some(o) = originals {
        c.insert("original-tags", o);
    }
    Ok(msg.clone().with(
        "commitments",
        Message::new().with(Key::new(&b64u(&item.id())), c),
    ))
}

/// The item to sign for `msg`: its content plus its `unsigned` commitment (whose original
/// tags restore tag names and order), if any. Returns the item and those original tags.
fn item_for_signing(msg: &Message) -> Result<(DataItem, Option<Value>)> {
    let unsigned = msg.commitments().and_then(|cs| {
        cs.iter().find(|(_, c)| {
            c.as_message()
                .is_some_and(|c| c.get_str("alg") == Some("unsigned"))
        })
    });
    let originals = unsigned
        .and_then(|(_, c)| c.as_message())
        .and_then(|c| c.get("original-tags"))
        .cloned();
    let mut content = msg.clone().without("commitments");
    if let Some((id, c)) = unsigned {
        content.insert("commitments", Message::new().with(id.clone(), c.clone()));
    }
    Ok((to_item(&content)?, originals))
}

/// Signs a message as an ANS-104 item with an RSA wallet (HyperBEAM's `commit`): the result
/// carries one `ans104@1.0` commitment keyed by the item ID; other commitments are dropped.
pub fn commit(msg: &Message, wallet: &Wallet) -> Result<Message> {
    let (mut item, originals) = item_for_signing(msg)?;
    item.sign(wallet)?;
    signed_message(&msg.clone().without("commitments"), &item, originals)
}

/// [`commit`] with a secp256k1 key (signature type 3).
pub fn commit_eth(msg: &Message, wallet: &EthWallet) -> Result<Message> {
    let (mut item, originals) = item_for_signing(msg)?;
    item.sign_eth(wallet)?;
    signed_message(&msg.clone().without("commitments"), &item, originals)
}

/// Verifies an `ans104@1.0` commitment: rebuilds the item from the message and that
/// commitment, checks the signature (any salt length), that the item ID is the commitment ID
/// and that the owner is the committer.
pub fn verify_commitment(msg: &Message, id: &str) -> Result<()> {
    let c = msg
        .commitments()
        .and_then(|c| c.get_message(id))
        .ok_or_else(|| VerifyError::NoSuchCommitment(id.to_owned()))?;
    let bad = || -> Error { VerifyError::BadSignature { id: id.to_owned() }.into() };
    if c.get_str("alg") == Some("unsigned") {
        return Err(bad());
    }
    let content = msg
        .clone()
        .without("commitments")
        .with("commitments", Message::new().with(Key::new(id), c.clone()));
    let item = to_item(&content)?;
    item.verify().map_err(|_| bad())?;
    if b64u(&item.id()) != id {
        return Err(VerifyError::IdMismatch(id.to_owned()).into());
    }
    match (item.committer(), c.get_str("committer")) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err(VerifyError::KeyMismatch {
            id: id.to_owned(),
            committer: c.get_str("committer").unwrap_or_default().to_owned(),
        }
        .into()),
    }
}

/// The keys an ANS-104 commitment covers (spec §4.8): every key of the message that the item
/// carries (as a tag, as a bundle member, or implicitly as an empty value typed in `ao-types`)
/// and the record fields. HyperBEAM lists tag names and nested maps only, which leaves out
/// long values that travel as bundle members although the signature covers them. The
/// signature is not checked here.
pub fn committed_keys(msg: &Message, id: &str) -> Result<Vec<Key>> {
    let c = msg
        .commitments()
        .and_then(|c| c.get_message(id))
        .ok_or_else(|| VerifyError::NoSuchCommitment(id.to_owned()))?;
    let content = msg.clone().without("commitments");
    // The item must be buildable from the message, or nothing is committed.
    to_item(
        &content
            .clone()
            .with("commitments", Message::new().with(Key::new(id), c.clone())),
    )?;
    let mut keys: Vec<Key> = content
        .keys()
        .filter(|k| {
            !matches!(
                k.as_str(),
                "format" | "unsigned_id" | "tags" | "content-digest"
            )
        })
        .cloned()
        .collect();
    keys.push(Key::new("ao-types"));
    keys.extend(COMMITTED_FIELDS.iter().map(|k| Key::new(k)));
    keys.sort();
    keys.dedup();
    Ok(keys)
}
