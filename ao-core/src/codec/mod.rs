//! Codecs: each converts between TABM and a wire form (spec §5).
//!
//! * [`structured`] — rich values ⇄ TABM (`structured@1.0`).
//! * [`httpsig`] — TABM ⇄ HTTP headers and body (`httpsig@1.0`).
//! * [`flat`] — TABM ⇄ `/`-joined paths and `key: value` text (`flat@1.0`).
//! * [`json`] — TABM ⇄ JSON (`json@1.0`).

pub mod flat;
pub mod httpsig;
pub mod json;
pub mod structured;

use crate::{Message, Result};

/// Encodes a structured message as an HTTP message.
pub fn to_http(msg: &Message) -> Result<httpsig::HttpMessage> {
    httpsig::encode(&structured::to_tabm(msg)?)
}

/// Decodes an HTTP message into a structured message.
pub fn from_http(http: &httpsig::HttpMessage) -> Result<Message> {
    structured::from_tabm(&httpsig::decode(http)?)
}

/// Encodes a structured message as `json@1.0` text.
pub fn to_json(msg: &Message) -> Result<Vec<u8>> {
    json::encode(&structured::to_tabm(msg)?)
}

/// Decodes `json@1.0` text into a structured message.
pub fn from_json(text: &[u8]) -> Result<Message> {
    structured::from_tabm(&json::decode(text)?)
}

/// Encodes a structured message as `flat@1.0` text.
pub fn to_flat(msg: &Message) -> Result<Vec<u8>> {
    flat::serialize(&structured::to_tabm(msg)?)
}

/// Decodes `flat@1.0` text into a structured message.
pub fn from_flat(text: &[u8]) -> Result<Message> {
    structured::from_tabm(&flat::deserialize(text)?)
}
