//! Small encoding helpers.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// base64url without padding (the human form of IDs).
pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, with or without padding.
pub fn b64u_decode(text: &[u8]) -> Option<Vec<u8>> {
    let trimmed = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    URL_SAFE_NO_PAD.decode(trimmed).ok()
}

/// Standard base64 with padding.
pub fn b64_std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 with padding.
pub fn b64_std_decode(text: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Decodes a 43-character human ID to its 32 native bytes.
pub fn decode_id(text: &str) -> Option<[u8; 32]> {
    if text.len() != 43 {
        return None;
    }
    b64u_decode(text.as_bytes())?.try_into().ok()
}
