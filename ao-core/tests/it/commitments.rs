//! httpsig commitments: the signed gold vector of `httpsig-signed.json` (spec §10.3.3),
//! signing, verification, multiple signers, the hashpath `tag`, tampering.

use ao_core::codec::{self, httpsig};
use ao_core::commitment::{committed_keys, with_only_committed};
use ao_core::crypto::PssHash;
use ao_core::id::{IdScope, id_string};
use ao_core::signature::{self, SignatureInput};
use ao_core::util::{b64_std_decode, b64u};
use ao_core::verify::{self, VerifyError};
use ao_core::{Error, Key, Message, Value};
use bytes::Bytes;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::fixtures::{self, vectors};

fn sig1() -> Json {
    vectors("httpsig-signed.json")["vectors"][0].clone()
}

/// The SIG1 message with the commitments exactly as the vector gives them.
fn sig1_message() -> Message {
    let v = sig1();
    fixtures::message(&v["message"]).with("commitments", fixtures::message(&v["commitments"]))
}

fn assert_verification_error(r: ao_core::Result<()>) -> VerifyError {
    match r {
        Err(Error::Verification(e)) => e,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[test]
fn sig1_verifies_and_ids_match() {
    let v = sig1();
    let e = &v["expected"];
    let msg = sig1_message();
    assert_eq!(verify::verify_signatures(&msg).unwrap(), 1);
    let rsa_id = e["rsa_commitment_id"].as_str().unwrap();
    let salt = signature::verify_commitment(&msg, rsa_id).unwrap();
    assert_eq!(salt, 64, "HyperBEAM signs with salt = digest length");
    verify::verify_commitment(&msg, e["hmac_commitment_id"].as_str().unwrap()).unwrap();
    assert_eq!(id_string(&msg, IdScope::Unsigned).unwrap(), e["id_none"]);
    assert_eq!(id_string(&msg, IdScope::Signed).unwrap(), e["id_all"]);
    assert_eq!(id_string(&msg, IdScope::All).unwrap(), e["id_default"]);
    // The RSA commitment ID is the hash of the signature.
    let sig = b64_std_decode(v["signature_b64"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(b64u(&Sha256::digest(&sig)), rsa_id);
}

#[test]
fn sig1_committed_keys() {
    let msg = sig1_message();
    let mut got: Vec<String> = committed_keys(&msg)
        .unwrap()
        .into_iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = sig1()["expected"]["committed_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Nothing uncommitted to strip; an extra key is stripped.
    assert_eq!(with_only_committed(&msg).unwrap(), msg);
    let extra = msg.clone().with("sneaky", "x");
    assert_eq!(with_only_committed(&extra).unwrap(), msg);
}

#[test]
fn sig1_exact_signature_base_and_wire() {
    let v = sig1();
    let key1 = fixtures::wallet("key-1.json");
    assert_eq!(key1.address_string(), v["committer"]);
    assert_eq!(
        ao_core::wallet::signature_name(&key1.address()),
        v["signature_name"].as_str().unwrap()
    );
    let msg = fixtures::message(&v["message"]);
    let (_, _, base) = signature::signing_base(&msg, key1.public_key()).unwrap();
    assert_eq!(
        String::from_utf8(base.clone()).unwrap(),
        v["signature_base"]
    );
    // The vector's signature verifies over that base with key-1's modulus.
    let sig = b64_std_decode(v["signature_b64"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(
        key1.public_key()
            .verify_pss(PssHash::Sha512, &base, &sig)
            .unwrap(),
        64
    );
    // The wire form carries the signature headers of the HMAC commitment.
    let http = codec::to_http(&sig1_message()).unwrap();
    for (k, want) in v["wire_headers"].as_object().unwrap() {
        assert_eq!(
            http.header(k).map(|b| &b[..]),
            Some(want.as_str().unwrap().as_bytes()),
            "{k}"
        );
    }
    // Decoding the wire form gives back the same commitments and IDs.
    let decoded = codec::from_http(&http).unwrap();
    assert_eq!(decoded, sig1_message());
    assert_eq!(
        id_string(&decoded, IdScope::All).unwrap(),
        v["expected"]["id_default"]
    );
    verify::verify_signatures(&decoded).unwrap();
}

#[test]
fn resigning_with_key1_verifies_and_another_key_fails() {
    let key1 = fixtures::wallet("key-1.json");
    let key2 = fixtures::wallet("key-2.json");
    let v = sig1();
    let msg = fixtures::message(&v["message"]);
    let signed = signature::commit(&msg, &key1).unwrap();
    assert_eq!(verify::verify_signatures(&signed).unwrap(), 1);
    // Same content, same unsigned ID and HMAC commitment as the vector.
    assert_eq!(
        id_string(&signed, IdScope::Unsigned).unwrap(),
        v["expected"]["id_none"]
    );
    let hmac = v["expected"]["hmac_commitment_id"].as_str().unwrap();
    assert!(signed.commitments().unwrap().contains(hmac));
    // A key-2 signature over key-1's base, presented as key-1's commitment, fails.
    let (_, _, base) = signature::signing_base(&msg, key1.public_key()).unwrap();
    let forged = key2.sign(PssHash::Sha512, &base).unwrap();
    let (id, c) = rsa_commitment(&signed);
    let name = ao_core::wallet::signature_name(&key1.address());
    let c = c.with(
        "signature",
        format!("{name}=:{}:", ao_core::util::b64_std(&forged)),
    );
    let forged_id = b64u(&Sha256::digest(&forged));
    let tampered = signed.clone().with(
        "commitments",
        signed
            .commitments()
            .unwrap()
            .clone()
            .without(&id)
            .with(Key::new(&forged_id), c),
    );
    let err = assert_verification_error(verify::verify_commitment(&tampered, &forged_id));
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
    // Key-2's own keyid in key-1's commitment: the committer check catches it.
    let (id, c) = rsa_commitment(&signed);
    let input = c.get_str("signature-input").unwrap().replace(
        &b64u(key1.public_key().modulus()),
        &b64u(key2.public_key().modulus()),
    );
    let swapped = signed.clone().with(
        "commitments",
        signed
            .commitments()
            .unwrap()
            .clone()
            .with(Key::new(&id), c.with("signature-input", input)),
    );
    let err = assert_verification_error(verify::verify_commitment(&swapped, &id));
    assert!(matches!(err, VerifyError::KeyMismatch { .. }), "{err:?}");
}

fn rsa_commitment(msg: &Message) -> (String, Message) {
    msg.commitments()
        .unwrap()
        .iter()
        .find_map(|(k, v)| {
            let m = v.as_message()?;
            m.contains("committer")
                .then(|| (k.as_str().to_owned(), m.clone()))
        })
        .unwrap()
}

#[test]
fn flipped_bytes_fail() {
    let msg = sig1_message();
    let rsa_id = sig1()["expected"]["rsa_commitment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A header value.
    let changed = msg.clone().with("a", "c");
    let err = assert_verification_error(verify::verify_commitment(&changed, &rsa_id));
    assert!(matches!(err, VerifyError::BadSignature { .. }));
    // One bit of the signature (the ID no longer matches the signature).
    let (_, c) = rsa_commitment(&msg);
    let mut sig = c.get_str("signature").unwrap().as_bytes().to_vec();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    let bad = msg.clone().with(
        "commitments",
        msg.commitments()
            .unwrap()
            .clone()
            .with(Key::new(&rsa_id), c.with("signature", Bytes::from(sig))),
    );
    let err = assert_verification_error(verify::verify_commitment(&bad, &rsa_id));
    assert!(matches!(err, VerifyError::IdMismatch(_)), "{err:?}");

    // A body byte of a signed message with a body.
    let key1 = fixtures::wallet("key-1.json");
    let with_body = ao_core::msg! { "k" => "v", "body" => "hello body" };
    let signed = signature::commit(&with_body, &key1).unwrap();
    verify::verify_signatures(&signed).unwrap();
    let (id, c) = rsa_commitment(&signed);
    assert!(
        c.get_str("signature-input")
            .unwrap()
            .contains("\"content-digest\"")
    );
    let tampered = signed.clone().with("body", "hello bodY");
    let err = assert_verification_error(verify::verify_commitment(&tampered, &id));
    assert!(matches!(err, VerifyError::BadSignature { .. }));
    // Through the wire: flip a body byte of the encoded request.
    let mut http = codec::to_http(&signed).unwrap();
    let mut body = http.body.clone().unwrap().to_vec();
    body[0] ^= 1;
    http.body = Some(Bytes::from(body));
    let err = signature::verify_received(&http, &Default::default()).unwrap_err();
    assert!(
        matches!(err, Error::Verification(VerifyError::DigestMismatch)),
        "{err:?}"
    );
}

#[test]
fn second_signer_key2() {
    let v = sig1();
    let variant = &v["variants"]["second_signer_key2"];
    let key2 = fixtures::wallet("key-2.json");
    assert_eq!(key2.address_string(), variant["committer"]);
    let msg = sig1_message();
    let both = signature::commit(&msg, &key2).unwrap();
    let commitments = both.commitments().unwrap();
    assert_eq!(commitments.len(), 3);
    let hmac_id = v["expected"]["hmac_commitment_id"].as_str().unwrap();
    let hmac = commitments.get_message(hmac_id).expect("HMAC ID unchanged");
    // The HMAC commitment's dictionaries list both signers, in name order.
    let inputs =
        SignatureInput::parse_all(hmac.get_str("signature-input").unwrap().as_bytes()).unwrap();
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            v["signature_name"].as_str().unwrap(),
            variant["signature_name"].as_str().unwrap()
        ]
    );
    assert_eq!(verify::verify_signatures(&both).unwrap(), 2);
    assert_eq!(id_string(&both, IdScope::Unsigned).unwrap(), hmac_id);
    let mut ids: Vec<&str> = commitments.keys().map(Key::as_str).collect();
    ids.sort();
    assert_eq!(
        id_string(&both, IdScope::All).unwrap(),
        b64u(&Sha256::digest(ids.join(", ").as_bytes()))
    );
    let mut committers = ao_core::message_device::committers(&both);
    committers.sort();
    let mut want = vec![
        v["committer"].as_str().unwrap().to_owned(),
        variant["committer"].as_str().unwrap().to_owned(),
    ];
    want.sort();
    assert_eq!(committers, want);
    // The wire form carries both signatures and decodes to something that verifies.
    let decoded = codec::from_http(&codec::to_http(&both).unwrap()).unwrap();
    assert_eq!(verify::verify_signatures(&decoded).unwrap(), 2);
    assert_eq!(
        id_string(&decoded, IdScope::All).unwrap(),
        id_string(&both, IdScope::All).unwrap()
    );
    let received =
        signature::verify_received(&codec::to_http(&both).unwrap(), &Default::default()).unwrap();
    assert_eq!(received.len(), 2);
}

#[test]
fn hashpath_tag_variant() {
    let v = sig1();
    let variant = &v["variants"]["with_hashpath_tag"];
    let key1 = fixtures::wallet("key-1.json");
    let mut msg = fixtures::message(&v["message"]);
    msg.set_hashpath(Some(variant["priv_hashpath"].as_str().unwrap().into()));
    let signed = signature::commit(&msg, &key1).unwrap();
    let (_, c) = rsa_commitment(&signed);
    let input = c.get_str("signature-input").unwrap();
    assert!(
        input.ends_with(variant["signature_input_params"].as_str().unwrap()),
        "{input}"
    );
    verify::verify_signatures(&signed).unwrap();
    // The tag is part of the signed base: editing it breaks the signature.
    let (id, c) = rsa_commitment(&signed);
    let retagged = signed.clone().with(
        "commitments",
        signed.commitments().unwrap().clone().with(
            Key::new(&id),
            c.with("signature-input", input.replace("/a\"", "/b\"")),
        ),
    );
    assert!(verify::verify_commitment(&retagged, &id).is_err());
}

#[test]
fn derived_components_sort_then_prefix() {
    let key1 = fixtures::wallet("key-1.json");
    let msg = ao_core::msg! { "path" => "/x", "method" => "GET", "k" => "v" };
    let (comps, line, base) = signature::signing_base(&msg, key1.public_key()).unwrap();
    assert_eq!(comps, ["k", "@method", "@path"]);
    assert!(line.starts_with(b"(\"k\" \"@method\" \"@path\");alg="));
    assert!(base.starts_with(b"\"k\": v\n\"method\": GET\n\"path\": /x\n"));
    let signed = signature::commit(&msg, &key1).unwrap();
    verify::verify_signatures(&signed).unwrap();
    // The HMAC (prefix then sort) is still the unsigned ID.
    assert_eq!(
        id_string(&signed, IdScope::Unsigned).unwrap(),
        "gWjCrUSDOVnS-IJatL1V794NTVENkX8EaU8XH3zd-ok"
    );
}

#[test]
fn message_device_verify_and_commit() {
    use ao_core::message_device::{commit, handle};
    let msg = sig1_message();
    assert_eq!(
        handle("verify", &msg, &Message::new()).unwrap(),
        Value::bool(true)
    );
    let tampered = msg.clone().with("a", "x");
    assert_eq!(
        handle("verify", &tampered, &Message::new()).unwrap(),
        Value::bool(false)
    );
    // `target: body` checks the request's body, not the base.
    let req = Message::new()
        .with("target", "body")
        .with("body", tampered.clone());
    assert_eq!(handle("verify", &msg, &req).unwrap(), Value::bool(false));
    let req = Message::new()
        .with("target", "body")
        .with("body", msg.clone());
    assert_eq!(
        handle("verify", &tampered, &req).unwrap(),
        Value::bool(true)
    );
    // HMAC too with `commitments: all`.
    let req = Message::new().with("commitments", "all");
    assert_eq!(handle("verify", &msg, &req).unwrap(), Value::bool(true));
    // `commit` without a wallet is refused with a typed 400.
    let err = handle("commit", &msg, &Message::new()).unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)));
    assert_eq!(err.http_status(), 400);
    let key1 = fixtures::wallet("key-1.json");
    let plain = ao_core::msg! { "x" => "y" };
    let signed = commit(&plain, &Message::new(), Some(&key1)).unwrap();
    assert_eq!(verify::verify_signatures(&signed).unwrap(), 1);
    let signed = commit(
        &plain,
        &Message::new().with("commitment-device", "ans104@1.0"),
        Some(&key1),
    )
    .unwrap();
    assert_eq!(verify::verify_signatures(&signed).unwrap(), 1);
}

#[test]
fn message_device_commit_through_the_resolver() {
    let key1 = fixtures::wallet("key-1.json");
    let resolver = ao_core::Resolver::builder(ao_core::DeviceRegistry::builder().build())
        .extension(key1.clone())
        .build();
    let base = ao_core::msg! { "x" => "y" };
    let out = futures::executor::block_on(
        resolver.resolve(base.clone(), Message::new().with("path", "commit")),
    )
    .unwrap();
    let Value::Message(signed) = out else {
        panic!("commit returns a message")
    };
    assert_eq!(verify::verify_signatures(&signed).unwrap(), 1);
    assert_eq!(
        ao_core::message_device::committers(&signed),
        [key1.address_string()]
    );
    // No wallet: a typed error.
    let bare = ao_core::Resolver::builder(ao_core::DeviceRegistry::builder().build()).build();
    let err =
        futures::executor::block_on(bare.resolve(base, Message::new().with("path", "commit")))
            .unwrap_err();
    assert_eq!(err.http_status(), 400);
}

#[test]
fn httpsig_round_trip_of_decoded_wire_verifies() {
    // A signed message with a nested map and a large value: multipart on the wire.
    let key1 = fixtures::wallet("key-1.json");
    let msg = ao_core::msg! {
        "a" => "1",
        "nested" => ao_core::msg! { "b" => "2", "c" => 3i64 },
        "big" => "A".repeat(5000),
    };
    let signed = signature::commit(&msg, &key1).unwrap();
    let http = codec::to_http(&signed).unwrap();
    assert!(http.header("content-type").is_some());
    signature::verify_received(&http, &Default::default()).unwrap();
    let decoded = codec::from_http(&http).unwrap();
    assert_eq!(verify::verify_signatures(&decoded).unwrap(), 1);
    let _ = httpsig::content_digest(b"");
}
