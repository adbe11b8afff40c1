//! Verifying commitments, and the request verification policy (spec §4.7).
//!
//! HyperBEAM does not verify requests by default (`force_signed_requests` is off), and its
//! `hb_message:verify` skips HMAC commitments and accepts unsigned messages. This module
//! verifies every *signature* commitment (those naming a committer) with the codec that made
//! it, and lets the HTTP layer choose how strict to be with [`Policy`].

use crate::ans104;
use crate::codec::httpsig::HttpMessage;
use crate::commitment::HTTPSIG_DEVICE;
use crate::signature::{self, RequestLine};
use crate::{Error, Message, Result, Value};

/// Why a commitment or a request did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The policy requires a signature and the request has none.
    #[error("the request is not signed")]
    Unsigned,
    /// No commitment with this ID.
    #[error("no commitment {0:?}")]
    NoSuchCommitment(String),
    /// A commitment (or signature header) that cannot be checked.
    #[error("malformed commitment {id:?}: {reason}")]
    Malformed {
        /// The commitment ID or signature name.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A signature algorithm or commitment device this node does not verify.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlg(String),
    /// The key that made the signature does not hash to the commitment's committer.
    #[error("commitment {id:?}: the signing key is not the committer {committer:?}'s")]
    KeyMismatch {
        /// The commitment ID.
        id: String,
        /// The claimed committer.
        committer: String,
    },
    /// The commitment ID is not the hash of its signature.
    #[error("commitment ID {0:?} is not the hash of its signature")]
    IdMismatch(String),
    /// A covered component is absent from the message.
    #[error("covered component {0:?} is missing")]
    MissingComponent(String),
    /// `content-digest` does not match the body.
    #[error("content-digest does not match the body")]
    DigestMismatch,
    /// The signature does not verify.
    #[error("signature of commitment {id:?} does not verify")]
    BadSignature {
        /// The commitment ID.
        id: String,
    },
}

/// IDs of the signature commitments (those naming a committer), in key order.
pub fn signature_commitments(msg: &Message) -> Vec<String> {
    msg.commitments()
        .into_iter()
        .flat_map(|c| c.iter())
        .filter(|(_, v)| matches!(v, Value::Message(m) if m.contains("committer")))
        .map(|(k, _)| k.as_str().to_owned())
        .collect()
}

/// Verifies one commitment of a message with the device that made it: httpsig RSA (by
/// re-encoding), httpsig HMAC (by recomputing), or ANS-104 (by rebuilding the data item).
pub fn verify_commitment(msg: &Message, id: &str) -> Result<()> {
    let c = msg
        .commitments()
        .and_then(|c| c.get_message(id))
        .ok_or_else(|| VerifyError::NoSuchCommitment(id.to_owned()))?;
    match (c.get_str("commitment-device"), c.get_str("alg")) {
        (Some(HTTPSIG_DEVICE), Some(signature::ALG_HMAC_SHA256)) => signature::verify_hmac(msg, id),
        (Some(HTTPSIG_DEVICE), _) => signature::verify_commitment(msg, id).map(|_| ()),
        (Some(ans104::DEVICE), _) => ans104::verify_commitment(msg, id),
        (device, alg) => Err(VerifyError::UnsupportedAlg(format!(
            "{}/{}",
            device.unwrap_or("?"),
            alg.unwrap_or("?")
        ))
        .into()),
    }
}

/// Verifies every signature commitment (`hb_message:verify(M)` semantics: HMACs are not
/// checked, and a message without signatures verifies). Returns how many were checked.
pub fn verify_signatures(msg: &Message) -> Result<usize> {
    let ids = signature_commitments(msg);
    for id in &ids {
        verify_commitment(msg, id)?;
    }
    Ok(ids.len())
}

/// How strictly the node checks incoming requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Do not verify (HyperBEAM's default, `force_signed_requests = false`).
    #[default]
    Off,
    /// Verify every signature a request carries; accept unsigned requests.
    IfSigned,
    /// Require at least one signature, and verify every signature.
    RequireSigned,
}

/// Applies `policy` to a decoded request.
///
/// `received` is the request as it arrived on the wire (headers, body, request line), when it
/// came over HTTP as an httpsig message: an httpsig commitment then verifies if *either* its
/// signature verifies over the received headers and body, or HyperBEAM's re-encoding check
/// passes. Foreign clients (aoconnect, ao-core-libs) need the former; messages relayed
/// between nodes, the latter. Every other commitment is verified by re-encoding.
pub fn apply_policy(
    policy: Policy,
    msg: &Message,
    received: Option<(&HttpMessage, &RequestLine)>,
) -> Result<()> {
    if policy == Policy::Off {
        return Ok(());
    }
    let ids = signature_commitments(msg);
    if ids.is_empty() {
        return match policy {
            Policy::RequireSigned => Err(VerifyError::Unsigned.into()),
            _ => Ok(()),
        };
    }
    // Received-form verification, computed once for all httpsig commitments.
    let mut received_ok: Option<std::result::Result<Vec<String>, Error>> = None;
    for id in &ids {
        let is_httpsig = msg
            .commitments()
            .and_then(|c| c.get_message(id))
            .is_some_and(|c| c.get_str("commitment-device") == Some(HTTPSIG_DEVICE));
        if is_httpsig && let Some((http, line)) = received {
            let verified = received_ok.get_or_insert_with(|| {
                signature::verify_received(http, line)
                    .map(|v| v.into_iter().map(|s| s.commitment_id).collect())
            });
            if let Ok(ids) = verified
                && ids.contains(id)
            {
                continue;
            }
        }
        verify_commitment(msg, id)?;
    }
    Ok(())
}
