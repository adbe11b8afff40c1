//! Signature headers from the wire never panic the parsers, the decoder or the received-form
//! verifier.

#![no_main]

use ao_core::codec::httpsig::HttpMessage;
use ao_core::signature::{self, RequestLine, SignatureInput};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SignatureInput::parse_all(data);
    // Split the input into signature-input, signature and body.
    let (a, rest) = data.split_at(data.len() / 2);
    let (b, body) = rest.split_at(rest.len() / 2);
    let mut http = HttpMessage::default();
    http.headers
        .insert("signature-input".into(), Bytes::copy_from_slice(a));
    http.headers
        .insert("signature".into(), Bytes::copy_from_slice(b));
    http.headers
        .insert("content-digest".into(), Bytes::copy_from_slice(b));
    http.headers.insert("a".into(), Bytes::from_static(b"b"));
    if !body.is_empty() {
        http.body = Some(Bytes::copy_from_slice(body));
    }
    let line = RequestLine {
        method: Some(Bytes::from_static(b"POST")),
        path: Some(Bytes::from_static(b"/x")),
    };
    let _ = signature::verify_received(&http, &line);
    let _ = signature::digest_matches(b, body);
    if let Ok(msg) = ao_core::codec::from_http(&http) {
        let _ = ao_core::verify::verify_signatures(&msg);
        let _ = ao_core::commitment::committed_keys(&msg);
    }
});
