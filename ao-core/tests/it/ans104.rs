//! ANS-104 data items: the vectors of `ans104.json` (spec §10.3.4), Ethereum items, typed
//! parse errors.

use ao_core::ans104::deep_hash::{self, Chunk};
use ao_core::ans104::{self, Ans104Error, DataItem, SignatureType, Tag, avro};
use ao_core::id::{IdScope, id_string};
use ao_core::util::{b64_std_decode, b64u};
use ao_core::verify::{self, Policy};
use ao_core::{Error, EthWallet, Message, Value};
use bytes::Bytes;
use serde_json::Value as Json;

use crate::fixtures::{self, vectors};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn item(name: &str) -> Json {
    vectors("ans104.json")["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no item {name}"))
        .clone()
}

fn bytes_of(v: &Json) -> Bytes {
    Bytes::from(b64_std_decode(v["serialized_b64"].as_str().unwrap().as_bytes()).unwrap())
}

fn tags_of(v: &Json) -> Vec<Tag> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            Tag::new(
                t["name"].as_str().unwrap().to_owned(),
                t["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn deep_hash_and_avro_vectors() {
    let file = vectors("ans104.json");
    for v in file["deep_hash"].as_array().unwrap() {
        let blobs: Vec<&[u8]> = v["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().as_bytes())
            .collect();
        let chunks: Vec<Chunk<'_>> = blobs.iter().map(|b| Chunk::Blob(b)).collect();
        let got = deep_hash::deep_hash(Chunk::List(&chunks));
        assert_eq!(
            hex(&got).to_uppercase(),
            v["sha384_hex"].as_str().unwrap(),
            "{}",
            v["input"]
        );
    }
    for v in file["avro_tags"].as_array().unwrap() {
        let tags = tags_of(&v["tags"]);
        let encoded = avro::encode(&tags);
        assert_eq!(hex(&encoded), v["hex"].as_str().unwrap());
        let decoded = avro::decode(&Bytes::from(encoded), tags.len() as u64).unwrap();
        assert_eq!(decoded, tags);
    }
}

#[test]
fn ans1_unsigned_serializes_byte_for_byte() {
    let v = item("ANS1-unsigned");
    let msg = fixtures::message(&v["message"]);
    let it = ans104::to_item(&msg).unwrap();
    assert_eq!(it.tags, tags_of(&v["tags"]));
    assert_eq!(&it.data[..], v["data"].as_str().unwrap().as_bytes());
    let ser = it.serialize();
    assert_eq!(ser.len() as u64, v["serialized_length"].as_u64().unwrap());
    assert_eq!(Bytes::from(ser.clone()), bytes_of(&v));
    assert_eq!(
        hex(&it.signature_data()).to_uppercase(),
        v["signature_data_hex"].as_str().unwrap()
    );
    assert_eq!(b64u(&it.unsigned_id()), v["unsigned_id"].as_str().unwrap());
    assert!(!it.is_signed());
    assert_eq!(it.verify(), Err(Ans104Error::Unsigned));
    // Parse and decode back.
    let parsed = DataItem::parse(&Bytes::from(ser)).unwrap();
    assert_eq!(parsed, it);
    assert_eq!(ans104::from_item(&parsed).unwrap(), msg);
}

#[test]
fn ans2_signed_parses_verifies_and_yields_ids() {
    let v = item("ANS2-signed-key1");
    let e = &v["expected"];
    let raw = bytes_of(&v);
    let it = DataItem::parse(&raw).unwrap();
    assert_eq!(it.signature_type, SignatureType::Arweave);
    it.verify().unwrap();
    assert_eq!(b64u(&it.id()), v["id"].as_str().unwrap());
    assert_eq!(
        hex(&it.signature_data()).to_uppercase(),
        v["signature_data_hex"].as_str().unwrap()
    );
    let key1 = fixtures::wallet("key-1.json");
    assert_eq!(&it.owner, key1.public_key().modulus());
    assert_eq!(it.serialize(), raw.to_vec());
    // Salt 32, as HyperBEAM signs.
    let salt = key1
        .public_key()
        .verify_pss(
            ao_core::crypto::PssHash::Sha256,
            &it.signature_data(),
            &it.signature,
        )
        .unwrap();
    assert_eq!(salt, 32);
    // As a message.
    let msg = ans104::decode(&raw).unwrap();
    assert_eq!(
        msg.clone().without("commitments"),
        fixtures::message(&v["message"])
    );
    assert_eq!(id_string(&msg, IdScope::All).unwrap(), e["id_default"]);
    assert_eq!(
        id_string(&msg, IdScope::Signed).unwrap(),
        e["commitment_id"]
    );
    assert_eq!(id_string(&msg, IdScope::Unsigned).unwrap(), e["id_none"]);
    let c = msg
        .commitments()
        .unwrap()
        .get_message(e["commitment_id"].as_str().unwrap())
        .unwrap();
    for (k, want) in e["commitment"].as_object().unwrap() {
        assert_eq!(c.get_str(k), want.as_str(), "{k}");
    }
    assert_eq!(c.get("owner").and_then(Value::as_bytes), Some(&it.owner));
    assert_eq!(
        c.get("signature").and_then(Value::as_bytes),
        Some(&it.signature)
    );
    // The message re-encodes to the same bytes and verifies by rebuilding the item.
    assert_eq!(ans104::encode(&msg).unwrap(), raw.to_vec());
    assert_eq!(verify::verify_signatures(&msg).unwrap(), 1);
    verify::apply_policy(Policy::RequireSigned, &msg, None).unwrap();
    // Committed keys cover the content.
    let keys = ao_core::commitment::committed_keys(&msg).unwrap();
    for k in ["data", "tag"] {
        assert!(keys.iter().any(|x| x.as_str() == k), "{k} in {keys:?}");
    }
    // Re-signing the message verifies; a changed field does not.
    let resigned = ans104::commit(&fixtures::message(&v["message"]), &key1).unwrap();
    assert_eq!(verify::verify_signatures(&resigned).unwrap(), 1);
    let changed = msg.clone().with("tag", "other");
    assert!(verify::verify_signatures(&changed).is_err());
    // One flipped byte in the data.
    let mut bad = raw.to_vec();
    *bad.last_mut().unwrap() ^= 1;
    let bad_item = DataItem::parse(&Bytes::from(bad)).unwrap();
    assert_eq!(bad_item.verify(), Err(Ans104Error::BadSignature));
}

#[test]
fn ans3_unsigned_mixed_case_tags() {
    let v = item("ANS3-unsigned-mixed-case-tags");
    let raw = bytes_of(&v);
    assert_eq!(raw.len() as u64, v["serialized_length"].as_u64().unwrap());
    let it = DataItem::parse(&raw).unwrap();
    assert_eq!(it.tags, tags_of(&v["tags"]));
    assert_eq!(b64u(&it.unsigned_id()), v["unsigned_id"].as_str().unwrap());
    let msg = ans104::from_item(&it).unwrap();
    assert_eq!(
        msg.clone().without("commitments"),
        fixtures::message(&v["expected_decoded_message"])
    );
    // The `unsigned` commitment carrying the original tags, keyed by the all-zero ID.
    let zero = b64u(&[0u8; 32]);
    let c = msg.commitments().unwrap().get_message(&zero).unwrap();
    assert_eq!(c.get_str("alg"), Some("unsigned"));
    assert_eq!(c.get_str("commitment-device"), Some("ans104@1.0"));
    let tags = c.get_message("original-tags").unwrap();
    assert_eq!(
        tags.get_message("1").unwrap().get_str("name"),
        Some("Content-Type")
    );
    assert_eq!(
        tags.get_message("2").unwrap().get_str("name"),
        Some("Action")
    );
    assert_eq!(id_string(&msg, IdScope::All).unwrap(), zero);
    // The original tags restore the item byte for byte.
    assert_eq!(ans104::encode(&msg).unwrap(), raw.to_vec());
    // Signing such a message keeps the original tags (names and order).
    let key1 = fixtures::wallet("key-1.json");
    let signed = ans104::commit(&msg, &key1).unwrap();
    let signed_item = ans104::to_item(&signed).unwrap();
    assert_eq!(signed_item.tags, it.tags);
    signed_item.verify().unwrap();
    assert_eq!(verify::verify_signatures(&signed).unwrap(), 1);
}

#[test]
fn ans4_nested_bundle() {
    let v = item("ANS4-nested-bundle");
    let msg = fixtures::message(&v["message"]);
    let it = ans104::to_item(&msg).unwrap();
    assert_eq!(it.tags, tags_of(&v["tags"]));
    assert_eq!(b64u(&it.unsigned_id()), v["unsigned_id"].as_str().unwrap());
    let raw = bytes_of(&v);
    assert_eq!(it.serialize(), raw.to_vec());
    let bundle = &v["bundle"];
    let bundle_map = it
        .tags
        .iter()
        .find(|t| &t.name[..] == b"bundle-map")
        .unwrap();
    assert_eq!(
        &bundle_map.value[..],
        bundle["manifest"]["unsigned_id"]
            .as_str()
            .unwrap()
            .as_bytes()
    );
    // The member and the manifest, as items of the bundle.
    let count = u64::from_be_bytes(it.data[24..32].try_into().unwrap());
    assert_eq!(count, bundle["count"].as_u64().unwrap());
    let member = &bundle["members"][0];
    let member_id = b64_std_decode(b"").unwrap_or_default();
    assert!(member_id.is_empty());
    let second_id = &it.data[32 + 64 + 32..32 + 64 + 64];
    assert_eq!(b64u(second_id), member["unsigned_id"].as_str().unwrap());
    // Decoding gives the structured message back (keys normalised).
    let decoded = ans104::decode(&raw).unwrap();
    let want = Message::new()
        .with("count", 42i64)
        .with("name", "x")
        .with("nested", Message::new().with("k", "v"));
    assert_eq!(decoded, want);
}

fn u256(n: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&(n as u64).to_be_bytes());
    out
}

/// HyperBEAM bundle data: the item count, then each item's size and unsigned ID, then the items.
fn bundle_data(items: &[&DataItem]) -> Vec<u8> {
    let mut out = u256(items.len()).to_vec();
    for it in items {
        out.extend_from_slice(&u256(it.serialize().len()));
        out.extend_from_slice(&it.unsigned_id());
    }
    for it in items {
        out.extend_from_slice(&it.serialize());
    }
    out
}

/// A bundle whose manifest names `member` under the keys `keys`.
fn bundle_naming(member: &DataItem, keys: &[&str]) -> DataItem {
    let id = b64u(&member.unsigned_id());
    let index: serde_json::Map<String, Json> = keys
        .iter()
        .map(|k| ((*k).to_owned(), Json::String(id.clone())))
        .collect();
    let manifest = DataItem::new(
        vec![
            Tag::new("data-protocol", "bundle-map"),
            Tag::new("variant", "0.0.1"),
        ],
        serde_json::to_vec(&index).unwrap(),
    );
    DataItem::new(
        vec![
            Tag::new("bundle-format", "binary"),
            Tag::new("bundle-version", "2.0.0"),
            Tag::new("bundle-map", b64u(&manifest.unsigned_id())),
        ],
        bundle_data(&[&manifest, member]),
    )
}

/// A manifest naming one member under two keys, at each level of a nested bundle, would make
/// a few kilobytes decode into 2^depth messages: it is refused, while the same nesting naming
/// each member once decodes.
#[test]
fn a_bundle_member_named_twice_is_refused() {
    let leaf = DataItem::new(vec![Tag::new("k", "v")], Vec::new());
    let (mut doubled, mut single) = (leaf.clone(), leaf);
    for _ in 0..24 {
        doubled = bundle_naming(&doubled, &["a", "b"]);
        single = bundle_naming(&single, &["a"]);
    }
    let raw = Bytes::from(doubled.serialize());
    assert!(raw.len() < 64 * 1024, "{} bytes", raw.len());
    match ans104::decode(&raw) {
        Err(Error::Ans104(e)) => assert!(e.to_string().contains("named twice"), "{e}"),
        other => panic!("{other:?}"),
    }
    let decoded = ans104::decode(&Bytes::from(single.serialize())).unwrap();
    let mut at = &decoded;
    for _ in 0..24 {
        at = at.get_message("a").unwrap();
    }
    assert_eq!(at.get_str("k"), Some("v"));
}

#[test]
fn ethereum_item_round_trips_and_verifies() {
    let wallet = EthWallet::from_secret(&[0x42; 32]).unwrap();
    let msg = ao_core::msg! { "action" => "Eval", "data" => "return 1+1" };
    let signed = ans104::commit_eth(&msg, &wallet).unwrap();
    let raw = ans104::encode(&signed).unwrap();
    let it = DataItem::parse(&Bytes::from(raw.clone())).unwrap();
    assert_eq!(it.signature_type, SignatureType::Ethereum);
    assert_eq!(it.owner.len(), 65);
    assert_eq!(it.signature.len(), 65);
    it.verify().unwrap();
    assert_eq!(it.committer().unwrap(), wallet.address());
    assert_eq!(wallet.address().len(), 42);
    let decoded = ans104::decode(&Bytes::from(raw)).unwrap();
    assert_eq!(decoded, signed);
    assert_eq!(verify::verify_signatures(&decoded).unwrap(), 1);
    assert_eq!(
        ao_core::message_device::committers(&decoded),
        [wallet.address()]
    );
    // Another key's signature over the same item fails.
    let other = EthWallet::from_secret(&[0x43; 32]).unwrap();
    let mut forged = it.clone();
    forged.signature = Bytes::copy_from_slice(&other.sign(&it.signature_data()).unwrap());
    assert_eq!(forged.verify(), Err(Ans104Error::BadSignature));
    let mut tampered = it;
    tampered.data = Bytes::from_static(b"return 2+2");
    assert_eq!(tampered.verify(), Err(Ans104Error::BadSignature));
}

fn parse_err(bytes: Vec<u8>) -> Ans104Error {
    DataItem::parse(&Bytes::from(bytes)).expect_err("malformed input must not parse")
}

#[test]
fn typed_parse_errors() {
    let raw = bytes_of(&item("ANS2-signed-key1")).to_vec();
    // Every truncation of a valid item fails cleanly, except those that only cut the data.
    let header_len = raw.len() - 4;
    for n in 0..header_len {
        let e = parse_err(raw[..n].to_vec());
        assert!(
            matches!(
                e,
                Ans104Error::Truncated(_)
                    | Ans104Error::AbsurdLength { .. }
                    | Ans104Error::TagCountMismatch { .. }
            ),
            "{n}: {e:?}"
        );
    }
    // Unknown signature type.
    let mut b = raw.clone();
    b[0] = 9;
    assert_eq!(parse_err(b), Ans104Error::UnknownSignatureType(9));
    // Bad presence byte (the target is at 2 + 512 + 512).
    let mut b = raw.clone();
    b[1026] = 2;
    assert!(matches!(parse_err(b), Ans104Error::BadPresenceByte { .. }));
    // A lying tag count (1 declared in the header at 1028..1036).
    let mut b = raw.clone();
    b[1028] = 2;
    assert_eq!(
        parse_err(b),
        Ans104Error::TagCountMismatch {
            declared: 2,
            found: 1
        }
    );
    let mut b = raw.clone();
    b[1028..1036].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse_err(b), Ans104Error::TagCountMismatch { .. }));
    // An absurd tag-bytes length.
    let mut b = raw.clone();
    b[1036..1044].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse_err(b), Ans104Error::AbsurdLength { .. }));
    // A tag-bytes length that leaves bytes after the Avro array.
    let mut b = raw.clone();
    b[1036] += 2;
    assert!(matches!(parse_err(b), Ans104Error::TrailingTagBytes(_)));
    // An absurd tag name length inside the Avro data.
    let tags_at = 1044;
    let mut b = raw.clone();
    b[tags_at + 1] = 0x7e;
    assert!(matches!(parse_err(b), Ans104Error::AbsurdLength { .. }));
    // A malformed varint (ten continuation bytes).
    let mut b = raw[..tags_at].to_vec();
    b[1036..1044].copy_from_slice(&11u64.to_le_bytes());
    b.extend_from_slice(&[0xff; 11]);
    assert_eq!(parse_err(b), Ans104Error::BadVarint);
    // Through the codec these are typed `ao_core::Error`s.
    let err = ans104::decode(&Bytes::from_static(b"\x01\x00short")).unwrap_err();
    assert!(
        matches!(err, Error::Ans104(Ans104Error::Truncated(_))),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 400);
}

#[test]
fn tag_limits_and_duplicates() {
    let key1 = fixtures::wallet("key-1.json");
    // Duplicated tag names decode to an SF list and re-encode to the signed bytes.
    let mut it = DataItem::new(
        vec![Tag::new("x", "1"), Tag::new("x", "2"), Tag::new("Y", "3")],
        Bytes::from_static(b"d"),
    );
    it.sign(&key1).unwrap();
    let msg = ans104::from_item(&it).unwrap();
    assert_eq!(msg.get_str("x"), Some("\"1\", \"2\""));
    assert_eq!(ans104::to_item(&msg).unwrap(), it);
    assert_eq!(verify::verify_signatures(&msg).unwrap(), 1);
    // Too many tags fail verification even with a valid signature.
    let many: Vec<Tag> = (0..129).map(|i| Tag::new(format!("t{i}"), "v")).collect();
    let mut it = DataItem::new(many, Bytes::new());
    it.sign(&key1).unwrap();
    assert_eq!(it.verify(), Err(Ans104Error::TagLimits));
}
