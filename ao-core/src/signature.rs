//! HTTP message signatures, HyperBEAM style (spec §4.6–§4.7): signing a message with an RSA
//! wallet, verifying a commitment by re-encoding the message, and verifying a request against
//! the headers and body as received.
//!
//! The signature base is HyperBEAM's, not strict RFC 9421: derived components such as `@path`
//! keep their `@` in the `@signature-params` list but are rendered as `"path": <field value>`.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::codec::httpsig::{self, HttpMessage};
use crate::codec::structured;
use crate::commitment::{HTTPSIG_DEVICE, reset_hmac};
use crate::crypto::PssHash;
use crate::crypto::rsa::RsaPublicKey;
use crate::id::{is_derived, write_params_line};
use crate::sf::{self, BareItem, Member};
use crate::util::{b64_std, b64_std_decode, b64u, b64u_decode};
use crate::verify::VerifyError;
use crate::wallet::{Wallet, signature_name};
use crate::{Error, Key, Message, Result, Value};

/// The only signature algorithm of httpsig commitments.
pub const ALG_RSA_PSS_SHA512: &str = "rsa-pss-sha512";

/// The HMAC algorithm of the unsigned commitment.
pub const ALG_HMAC_SHA256: &str = "hmac-sha256";

/// Signature parameters HyperBEAM keeps (and sorts) when it rebuilds a base (note `expired`,
/// not RFC 9421's `expires`; spec §4.7).
pub const HYPERBEAM_PARAMS: [&str; 6] = ["created", "expired", "nonce", "alg", "keyid", "tag"];

/// One member of a `signature-input` dictionary.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureInput {
    /// The signature name (the dictionary key), e.g. `http-sig-c68f7b82569eb48e`.
    pub name: String,
    /// Covered components as written, e.g. `@path`, `content-digest`.
    pub components: Vec<String>,
    /// Signature parameters in the order received.
    pub params: Vec<(String, BareItem)>,
}

impl SignatureInput {
    /// Parses every member of a `signature-input` dictionary.
    pub fn parse_all(text: &[u8]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for (name, member) in sf::parse_dictionary(text)? {
            let Member::InnerList(items, params) = member else {
                return Err(malformed(
                    &name,
                    "signature-input member is not an inner list",
                ));
            };
            let mut components = Vec::with_capacity(items.len());
            for item in items {
                if !item.params.is_empty() {
                    return Err(malformed(&name, "component parameters are not supported"));
                }
                let text = match item.bare {
                    BareItem::String(s) => s,
                    _ => return Err(malformed(&name, "component is not a string")),
                };
                let text = String::from_utf8(text)
                    .map_err(|_| malformed(&name, "component is not UTF-8"))?;
                components.push(text.to_ascii_lowercase());
            }
            out.push(Self {
                name,
                components,
                params,
            });
        }
        Ok(out)
    }

    /// A text parameter (`alg`, `keyid`, `tag`, `nonce`).
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_text())
    }

    /// The `alg` parameter.
    pub fn alg(&self) -> Option<&str> {
        self.param("alg").and_then(|a| std::str::from_utf8(a).ok())
    }

    /// The public key named by `keyid` (the base64url RSA modulus).
    pub fn public_key(&self) -> Result<std::sync::Arc<RsaPublicKey>> {
        let keyid = self
            .param("keyid")
            .ok_or_else(|| malformed(&self.name, "no keyid parameter"))?;
        let n =
            b64u_decode(keyid).ok_or_else(|| malformed(&self.name, "keyid is not base64url"))?;
        crate::crypto::rsa::cached_key(&n).map_err(|e| malformed(&self.name, &e.to_string()))
    }

    /// `("c1" …)` plus the parameters: HyperBEAM's rendering (sorted by name, unknown names
    /// dropped) or the received order (RFC 9421).
    pub fn params_line(&self, hyperbeam: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.components.len() * 16);
        write_params_line(&mut out, &self.components, &[]);
        let mut params: Vec<&(String, BareItem)> = self.params.iter().collect();
        if hyperbeam {
            params.retain(|(k, _)| HYPERBEAM_PARAMS.contains(&k.as_str()));
            params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        }
        for (k, v) in params {
            out.push(b';');
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            sf::write_bare_item(&mut out, v);
        }
        out
    }
}

fn malformed(name: &str, reason: &str) -> Error {
    VerifyError::Malformed {
        id: name.to_owned(),
        reason: reason.to_owned(),
    }
    .into()
}

/// Builds a signature base: one `"name": value` line per component (derived components without
/// their `@`), then `"@signature-params": ` and the parameters line. Values come from `lookup`
/// (called with the name without `@`); a missing component is an error.
pub fn build_base<'a>(
    components: &[String],
    params_line: &[u8],
    mut lookup: impl FnMut(&str) -> Option<&'a [u8]>,
) -> Result<Vec<u8>> {
    let mut base = Vec::with_capacity(512 + params_line.len());
    if components.is_empty() {
        base.push(b'\n');
    }
    for c in components {
        let name = c.strip_prefix('@').unwrap_or(c);
        let value = lookup(name).ok_or_else(|| VerifyError::MissingComponent(c.clone()))?;
        base.push(b'"');
        base.extend_from_slice(name.as_bytes());
        base.extend_from_slice(b"\": ");
        let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(start, |i| i + 1);
        base.extend(
            value[start..end]
                .iter()
                .map(|&b| if b == b'\n' { b' ' } else { b }),
        );
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    base.extend_from_slice(params_line);
    Ok(base)
}

/// What [`commit`] signs: the encoded message without `signature`, `signature-input` and
/// `body-keys`, its body replaced by `content-digest`.
fn encode_for_signing(msg: &Message) -> Result<HttpMessage> {
    let mut http = httpsig::encode(&structured::to_tabm(msg)?)?;
    for k in ["signature", "signature-input", "body-keys"] {
        http.headers.remove(k);
    }
    if let Some(body) = http.body.take() {
        http.headers
            .insert("content-digest".into(), httpsig::content_digest(&body));
    }
    Ok(http)
}

/// The component list HyperBEAM signs: every header, sorted, then `@`-prefixed when derived
/// ("sort then prefix", spec §4.6).
pub fn signing_components(http: &HttpMessage) -> Vec<String> {
    http.headers
        .keys()
        .map(|k| {
            if is_derived(k) {
                format!("@{k}")
            } else {
                k.clone()
            }
        })
        .collect()
}

/// The exact base [`commit`] signs for `msg` and `wallet` (for tests and debugging).
pub fn signing_base(
    msg: &Message,
    public: &RsaPublicKey,
) -> Result<(Vec<String>, Vec<u8>, Vec<u8>)> {
    let http = encode_for_signing(msg)?;
    let comps = signing_components(&http);
    let keyid = b64u(public.modulus());
    let mut params: Vec<(&str, &str)> = vec![("alg", ALG_RSA_PSS_SHA512), ("keyid", &keyid)];
    if let Some(tag) = msg.hashpath() {
        params.push(("tag", tag));
    }
    let mut line = Vec::new();
    write_params_line(&mut line, &comps, &params);
    let base = build_base(&comps, &line, |n| http.headers.get(n).map(|v| &v[..]))?;
    Ok((comps, line, base))
}

/// Signs a message with an RSA wallet (spec §4.6): adds an `httpsig@1.0` / `rsa-pss-sha512`
/// commitment keyed by `b64u(sha256(signature))`, then recomputes the HMAC commitment.
/// A hashpath on the message becomes the `tag` parameter.
pub fn commit(msg: &Message, wallet: &Wallet) -> Result<Message> {
    let (_, line, base) = signing_base(msg, wallet.public_key())?;
    let sig = wallet.sign(PssHash::Sha512, &base)?;
    let name = signature_name(&wallet.address());
    let mut signature = Vec::with_capacity(name.len() + 700);
    signature.extend_from_slice(name.as_bytes());
    signature.extend_from_slice(b"=:");
    signature.extend_from_slice(b64_std(&sig).as_bytes());
    signature.push(b':');
    let mut input = Vec::with_capacity(name.len() + line.len() + 1);
    input.extend_from_slice(name.as_bytes());
    input.push(b'=');
    input.extend_from_slice(&line);
    let commitment = Message::new()
        .with("commitment-device", HTTPSIG_DEVICE)
        .with("alg", ALG_RSA_PSS_SHA512)
        .with("committer", wallet.address_string())
        .with("signature", Bytes::from(signature))
        .with("signature-input", Bytes::from(input));
    let id = b64u(&Sha256::digest(&sig));
    let mut commitments = msg.commitments().cloned().unwrap_or_default();
    commitments
        .fields_mut()
        .insert(Key::new(&id), Value::Message(commitment));
    reset_hmac(&msg.clone().with("commitments", commitments))
}

/// The single signature of an RSA commitment: its input, its bytes and its key.
struct CommitmentSignature {
    input: SignatureInput,
    signature: Vec<u8>,
    key: std::sync::Arc<RsaPublicKey>,
}

fn commitment_signature(id: &str, c: &Message) -> Result<CommitmentSignature> {
    let bad = |reason: &str| -> Error {
        VerifyError::Malformed {
            id: id.to_owned(),
            reason: reason.to_owned(),
        }
        .into()
    };
    let committer = c.get_str("committer").ok_or_else(|| bad("no committer"))?;
    let (Some(Value::Binary(sig_dict)), Some(Value::Binary(input_dict))) =
        (c.get("signature"), c.get("signature-input"))
    else {
        return Err(bad("no signature or signature-input"));
    };
    let inputs = SignatureInput::parse_all(input_dict)?;
    let committer_bytes = b64u_decode(committer.as_bytes())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| bad("committer is not an address"))?;
    let wanted = signature_name(&committer_bytes);
    let input = match inputs.iter().position(|i| i.name == wanted) {
        Some(i) => inputs[i].clone(),
        None if inputs.len() == 1 => inputs[0].clone(),
        None => return Err(bad("no signature-input member for the committer")),
    };
    let alg = input.alg().unwrap_or_default();
    if c.get_str("alg") != Some(alg) || alg != ALG_RSA_PSS_SHA512 {
        return Err(VerifyError::UnsupportedAlg(alg.to_owned()).into());
    }
    let key = input.public_key()?;
    if key.address() != committer_bytes {
        return Err(VerifyError::KeyMismatch {
            id: id.to_owned(),
            committer: committer.to_owned(),
        }
        .into());
    }
    let signature = sf::parse_dictionary(sig_dict)?
        .into_iter()
        .find(|(n, _)| *n == input.name)
        .and_then(|(_, m)| match m {
            Member::Item(sf::Item {
                bare: BareItem::Bytes(b),
                ..
            }) => Some(b),
            _ => None,
        })
        .ok_or_else(|| bad("no signature bytes for the signature-input member"))?;
    if b64u(&Sha256::digest(&signature)) != id {
        return Err(VerifyError::IdMismatch(id.to_owned()).into());
    }
    Ok(CommitmentSignature {
        input,
        signature,
        key,
    })
}

/// Verifies one `httpsig@1.0` RSA commitment of a message the way HyperBEAM does (spec §4.7):
/// re-encode the message, recompute `content-digest`, rebuild the base from the commitment's
/// component list (parameters sorted, unknown ones dropped) and check RSA-PSS-SHA512 with any
/// salt length. Returns the salt length.
pub fn verify_commitment(msg: &Message, id: &str) -> Result<usize> {
    let c = msg
        .commitments()
        .and_then(|c| c.get_message(id))
        .ok_or_else(|| VerifyError::NoSuchCommitment(id.to_owned()))?;
    let cs = commitment_signature(id, c)?;
    let http = encode_for_signing(msg)?;
    let line = cs.input.params_line(true);
    let base = build_base(&cs.input.components, &line, |n| {
        http.headers.get(n).map(|v| &v[..])
    })?;
    cs.key
        .verify_pss(PssHash::Sha512, &base, &cs.signature)
        .map_err(|_| VerifyError::BadSignature { id: id.to_owned() }.into())
}

/// Verifies the HMAC commitment `id`: recomputes the HMAC commitment and compares IDs.
pub fn verify_hmac(msg: &Message, id: &str) -> Result<()> {
    let reset = reset_hmac(msg)?;
    let ok = reset.commitments().is_some_and(|c| {
        c.get_message(id)
            .is_some_and(|m| m.get_str("alg") == Some(ALG_HMAC_SHA256))
    });
    if ok {
        Ok(())
    } else {
        Err(VerifyError::BadSignature { id: id.to_owned() }.into())
    }
}

/// The request-line values of derived components, for verifying a received request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLine {
    /// `@method`, e.g. `POST`.
    pub method: Option<Bytes>,
    /// `@path`, e.g. `/~message@1.0/set`.
    pub path: Option<Bytes>,
}

/// A signature of a received request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The signature name.
    pub name: String,
    /// The commitment ID the decoder gives it (`b64u(sha256(signature))`).
    pub commitment_id: String,
    /// The signer's address.
    pub committer: String,
    /// The PSS salt length used (64 for HyperBEAM, 446 for Node clients).
    pub salt_len: usize,
}

/// Verifies every signature of a request against its headers and body as received (RFC 9421
/// style with HyperBEAM's `"path": …` rendering of derived components), for clients whose
/// encoding HyperBEAM would not reproduce (aoconnect, ao-core-libs).
///
/// Derived components take their value from `request` when given, else from the header of
/// the same name. When `content-digest` is covered and the body is not empty, the digest
/// (standard or URL-safe base64) must match the body. Parameters are taken in the order
/// received. Fails with [`VerifyError::Unsigned`] when there is no signature.
pub fn verify_received(
    http: &HttpMessage,
    request: &RequestLine,
) -> Result<Vec<VerifiedSignature>> {
    let (Some(sig_header), Some(input_header)) =
        (http.header("signature"), http.header("signature-input"))
    else {
        return Err(VerifyError::Unsigned.into());
    };
    let sigs = sf::parse_dictionary(sig_header)?;
    let inputs = SignatureInput::parse_all(input_header)?;
    if inputs.is_empty() {
        return Err(VerifyError::Unsigned.into());
    }
    let mut out = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let alg = input.alg().unwrap_or_default();
        if alg != ALG_RSA_PSS_SHA512 {
            return Err(VerifyError::UnsupportedAlg(alg.to_owned()).into());
        }
        let signature = sigs
            .iter()
            .find(|(n, _)| *n == input.name)
            .and_then(|(_, m)| match m {
                Member::Item(sf::Item {
                    bare: BareItem::Bytes(b),
                    ..
                }) => Some(b.clone()),
                _ => None,
            })
            .ok_or_else(|| malformed(&input.name, "no signature for this signature-input"))?;
        let id = b64u(&Sha256::digest(&signature));
        if input.components.iter().any(|c| c == "content-digest")
            && let Some(body) = http.body.as_ref().filter(|b| !b.is_empty())
        {
            let header = http
                .header("content-digest")
                .ok_or_else(|| VerifyError::MissingComponent("content-digest".into()))?;
            if !digest_matches(header, body) {
                return Err(VerifyError::DigestMismatch.into());
            }
        }
        let key = input.public_key()?;
        let line = input.params_line(false);
        let base = build_base(&input.components, &line, |n| {
            let derived = match n {
                "method" => request.method.as_ref(),
                "path" => request.path.as_ref(),
                _ => None,
            };
            derived.or_else(|| http.headers.get(n)).map(|v| &v[..])
        })?;
        let salt_len = key
            .verify_pss(PssHash::Sha512, &base, &signature)
            .map_err(|_| VerifyError::BadSignature { id: id.clone() })?;
        out.push(VerifiedSignature {
            name: input.name.clone(),
            commitment_id: id,
            committer: key.address_string(),
            salt_len,
        });
    }
    Ok(out)
}

/// Whether a `content-digest` header (`sha-256=:…:` or `sha-512=:…:`, standard or URL-safe
/// base64) matches `body`.
pub fn digest_matches(header: &[u8], body: &[u8]) -> bool {
    let Ok(dict) = sf::parse_dictionary(header).or_else(|_| {
        // ao-core-libs writes base64url inside `:…:`, which is not an SF byte sequence.
        let text = std::str::from_utf8(header).map_err(|_| ())?;
        let (alg, rest) = text.split_once('=').ok_or(())?;
        let inner = rest
            .strip_prefix(':')
            .and_then(|r| r.strip_suffix(':'))
            .ok_or(())?;
        let bytes = b64u_decode(inner.as_bytes()).ok_or(())?;
        Ok::<_, ()>(vec![(
            alg.trim().to_owned(),
            Member::Item(sf::Item {
                bare: BareItem::Bytes(bytes),
                params: Vec::new(),
            }),
        )])
    }) else {
        return false;
    };
    let mut any = false;
    for (alg, m) in dict {
        let Some(BareItem::Bytes(d)) = m.as_item().map(|i| &i.bare) else {
            return false;
        };
        let expected = match alg.as_str() {
            "sha-256" => PssHash::Sha256.digest(&[body]),
            "sha-512" => PssHash::Sha512.digest(&[body]),
            _ => continue,
        };
        if *d != expected {
            return false;
        }
        any = true;
    }
    any
}

/// Decodes a standard-base64 signature value (helper for tests and tools).
pub fn decode_signature_b64(text: &str) -> Option<Vec<u8>> {
    b64_std_decode(text.as_bytes())
}
