//! The captured client requests of `fixtures/clients/` (clients-and-crates.md §1.4): each
//! decodes into a message and verifies with the maximum PSS salt its Node signer used; a
//! corrupted copy fails with a typed error.

use ao_core::ans104::{self, Ans104Error, DataItem};
use ao_core::codec::{self, httpsig::HttpMessage};
use ao_core::crypto::PssHash;
use ao_core::crypto::rsa::RsaPublicKey;
use ao_core::id::{IdScope, id_string};
use ao_core::signature::{self, RequestLine};
use ao_core::util::{b64_std_decode, b64u};
use ao_core::verify::{self, Policy, VerifyError};
use ao_core::{Error, Value};
use bytes::Bytes;
use serde_json::Value as Json;

use crate::fixtures;

const CAPTURES: [&str; 11] = [
    "aoconnect-dryrun.json",
    "aoconnect-message.json",
    "aoconnect-request-httpsig-get.json",
    "aoconnect-request-httpsig-multiline.json",
    "aoconnect-request-httpsig.json",
    "aoconnect-result.json",
    "aoconnect-results-1.json",
    "aoconnect-results-2.json",
    "aoconnect-spawn-1.json",
    "aoconnect-spawn-2.json",
    "hbsig-httpsig-nested.json",
];

/// The captured request as the HTTP layer would hand it over.
fn request(c: &Json) -> (HttpMessage, RequestLine, Bytes) {
    let mut http = HttpMessage::default();
    for h in c["headers"].as_array().unwrap() {
        let name = h[0].as_str().unwrap().to_ascii_lowercase();
        http.headers
            .insert(name, Bytes::from(h[1].as_str().unwrap().to_owned()));
    }
    let body = Bytes::from(b64_std_decode(c["body_base64"].as_str().unwrap().as_bytes()).unwrap());
    assert_eq!(body.len() as u64, c["body_length"].as_u64().unwrap());
    if !body.is_empty() {
        http.body = Some(body.clone());
    }
    let url = c["url"].as_str().unwrap();
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap();
    let line = RequestLine {
        method: Some(Bytes::from(c["method"].as_str().unwrap().to_owned())),
        path: Some(Bytes::from(path.to_owned())),
    };
    (http, line, body)
}

fn test_wallet_key() -> RsaPublicKey {
    fixtures::wallet("test-wallet.json").public_key().clone()
}

fn check_ans104(name: &str, c: &Json, body: &Bytes) {
    let v = &c["verification"];
    let it = DataItem::parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        it.signature_type.code() as u64,
        v["signature_type"].as_u64().unwrap()
    );
    assert_eq!(&it.owner, test_wallet_key().modulus(), "{name}: owner");
    it.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(b64u(&it.id()), v["id"].as_str().unwrap(), "{name}");
    assert_eq!(
        it.target.map(|t| b64u(&t)).unwrap_or_default(),
        v["target"].as_str().unwrap()
    );
    assert_eq!(
        &it.data[..],
        v["data"].as_str().unwrap().as_bytes(),
        "{name}"
    );
    let tags: Vec<(String, String)> = it
        .tags
        .iter()
        .map(|t| {
            (
                String::from_utf8(t.name.to_vec()).unwrap(),
                String::from_utf8(t.value.to_vec()).unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(tags, want, "{name}");
    assert_eq!(
        it.signature_data()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        v["deep_hash_hex"].as_str().unwrap()
    );
    // The salt rule: Node signs with the maximum salt (512 - 32 - 2), not the digest length.
    let salt = test_wallet_key()
        .verify_pss(PssHash::Sha256, &it.signature_data(), &it.signature)
        .unwrap();
    assert_eq!(salt, 478, "{name}");
    assert!(v["pss_sha256_verifies_with_salt"]["max"].as_bool().unwrap());
    assert!(
        !v["pss_sha256_verifies_with_salt"]["digest"]
            .as_bool()
            .unwrap()
    );
    // As a message: the request verifies under the strictest policy, by rebuilding the item.
    let msg = ans104::decode(body).unwrap();
    assert_eq!(
        id_string(&msg, IdScope::Signed).unwrap(),
        v["id"].as_str().unwrap()
    );
    verify::apply_policy(Policy::RequireSigned, &msg, None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        ans104::encode(&msg).unwrap(),
        body.to_vec(),
        "{name}: re-encodes"
    );
    // Tags arrive as normalised keys.
    for (k, val) in &want {
        let key = ao_core::key::normalize(k);
        if !matches!(key.as_ref(), "data-protocol" | "type" | "variant") {
            continue;
        }
        assert_eq!(msg.get_str(&key), Some(val.as_str()), "{name}: {key}");
    }
    // A corrupted copy (one flipped bit in the data, or in a tag) fails with a typed error.
    let mut bad = body.to_vec();
    // The last data byte, or (no data) the last byte of the last tag value before the Avro
    // terminator.
    let at = if it.data.is_empty() {
        bad.len() - 2
    } else {
        bad.len() - 1
    };
    bad[at] ^= 0x01;
    let bad = Bytes::from(bad);
    let item = DataItem::parse(&bad).unwrap();
    assert_eq!(item.verify(), Err(Ans104Error::BadSignature), "{name}");
    let bad_msg = ans104::decode(&bad).unwrap();
    match verify::apply_policy(Policy::IfSigned, &bad_msg, None) {
        Err(Error::Verification(VerifyError::BadSignature { .. })) => {}
        other => panic!("{name}: corrupted copy gave {other:?}"),
    }
}

fn check_httpsig(name: &str, c: &Json, http: &HttpMessage, line: &RequestLine) {
    let v = &c["verification"];
    let verified = signature::verify_received(http, line).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(verified.len(), 1);
    let s = &verified[0];
    assert_eq!(s.name, v["signature_name"].as_str().unwrap());
    assert_eq!(s.commitment_id, v["rsa_commitment_id"].as_str().unwrap());
    assert_eq!(
        s.committer,
        fixtures::wallet("test-wallet.json").address_string()
    );
    assert_eq!(s.salt_len, 446, "{name}: Node signs with the maximum salt");
    assert!(
        v["signature_base_variants"]["hyperbeam"]["pss_sha512_verifies_with_salt"]["max"]
            .as_bool()
            .unwrap()
    );
    // The decoded message carries the commitment and passes the strict policy given the
    // received form.
    let msg = codec::from_http(http).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ids = verify::signature_commitments(&msg);
    assert_eq!(ids, [v["rsa_commitment_id"].as_str().unwrap()], "{name}");
    verify::apply_policy(Policy::RequireSigned, &msg, Some((http, line)))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // Covered components are committed keys.
    let committed = ao_core::commitment::committed_keys(&msg).unwrap();
    for comp in v["covered_components"].as_array().unwrap() {
        let comp = comp.as_str().unwrap().trim_start_matches('@');
        assert!(
            committed.iter().any(|k| k.as_str() == comp),
            "{name}: {comp} in {committed:?}"
        );
    }
    // Corrupt the first covered header's value: the signature fails.
    let first = v["covered_components"][0]
        .as_str()
        .unwrap()
        .trim_start_matches('@');
    let mut bad = http.clone();
    let mut line = line.clone();
    if first == "path" {
        line.path = Some(Bytes::from_static(b"/~message@1.0/get"));
        bad.headers
            .insert("path".into(), Bytes::from_static(b"/~message@1.0/get"));
    } else {
        let mut value = bad.headers[first].to_vec();
        value[0] ^= 0x20;
        bad.headers.insert(first.to_owned(), Bytes::from(value));
    }
    match signature::verify_received(&bad, &line) {
        Err(Error::Verification(VerifyError::BadSignature { .. })) => {}
        other => panic!("{name}: corrupted header gave {other:?}"),
    }
    let bad_msg = codec::from_http(&bad).unwrap();
    assert!(matches!(
        verify::apply_policy(Policy::IfSigned, &bad_msg, Some((&bad, &line))),
        Err(Error::Verification(_))
    ));
    // A corrupted body (when there is one) fails the digest check.
    if let Some(body) = &http.body {
        let mut b = body.to_vec();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        let mut bad = http.clone();
        bad.body = Some(Bytes::from(b));
        match signature::verify_received(&bad, &line) {
            Err(Error::Verification(VerifyError::DigestMismatch)) => {}
            other => panic!("{name}: corrupted body gave {other:?}"),
        }
    }
}

#[test]
fn every_capture_decodes_and_verifies() {
    let mut seen = 0;
    for name in CAPTURES {
        let c = fixtures::client(name);
        let (http, line, body) = request(&c);
        match c["verification"]["kind"].as_str().unwrap() {
            "ans104" => {
                assert_eq!(
                    http.header("codec-device").map(|b| &b[..]),
                    Some(&b"ans104@1.0"[..])
                );
                check_ans104(name, &c, &body);
            }
            "httpsig" => check_httpsig(name, &c, &http, &line),
            "unsigned" => {
                let msg = codec::from_http(&http).unwrap();
                assert!(msg.commitments().is_none());
                verify::apply_policy(Policy::IfSigned, &msg, Some((&http, &line))).unwrap();
                match verify::apply_policy(Policy::RequireSigned, &msg, Some((&http, &line))) {
                    Err(Error::Verification(VerifyError::Unsigned)) => {}
                    other => panic!("{name}: unsigned request gave {other:?}"),
                }
                assert!(matches!(
                    signature::verify_received(&http, &line),
                    Err(Error::Verification(VerifyError::Unsigned))
                ));
            }
            other => panic!("{name}: unknown kind {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, CAPTURES.len());
    // Every capture in the folder is covered.
    let on_disk = std::fs::read_dir(fixtures::dir().join("clients"))
        .unwrap()
        .count();
    assert_eq!(on_disk, CAPTURES.len());
}

#[test]
fn aoconnect_token_ao_types_decode() {
    let c = fixtures::client("aoconnect-request-httpsig.json");
    let (http, _, _) = request(&c);
    let msg = codec::from_http(&http).unwrap();
    assert_eq!(msg.get("count"), Some(&Value::Integer(3)));
    assert_eq!(msg.get_str("action"), Some("Eval"));
}

#[test]
fn hbsig_rfc9421_at_path_rendering_does_not_verify() {
    // hbsig signs `"path": …`; an RFC 9421 `"@path": …` base fails (§0.3), so the received-form
    // verifier must render derived components HyperBEAM's way.
    let c = fixtures::client("hbsig-httpsig-nested.json");
    let v = &c["verification"]["signature_base_variants"];
    assert!(
        !v["rfc9421"]["pss_sha512_verifies_with_salt"]["auto"]
            .as_bool()
            .unwrap()
    );
    let (http, line, _) = request(&c);
    let sig = ao_core::sf::parse_dictionary(http.header("signature").unwrap()).unwrap();
    let Some(ao_core::sf::BareItem::Bytes(sig)) = sig[0].1.as_item().map(|i| i.bare.clone()) else {
        panic!("signature bytes")
    };
    let key = test_wallet_key();
    let hb = v["hyperbeam"]["signature_base"].as_str().unwrap();
    let rfc = v["rfc9421"]["signature_base"].as_str().unwrap();
    assert!(key.verify_pss(PssHash::Sha512, hb.as_bytes(), &sig).is_ok());
    assert!(
        key.verify_pss(PssHash::Sha512, rfc.as_bytes(), &sig)
            .is_err()
    );
    signature::verify_received(&http, &line).unwrap();
}
