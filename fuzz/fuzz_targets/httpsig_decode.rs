//! httpsig decoding: arbitrary headers and bodies decode or fail with a typed error; whatever
//! decodes and re-encodes decodes again, and after one such round trip the message is a fixpoint
//! of decode → encode → decode; its unsigned ID is computable.
#![no_main]

use ao_core::codec::{self, httpsig::HttpMessage};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: header lines `name: value` up to a blank line, then the body.
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut http = HttpMessage::default();
    for line in head.split(|&b| b == b'\n') {
        if let Some(i) = line.iter().position(|&b| b == b':')
            && let Ok(name) = std::str::from_utf8(&line[..i])
        {
            let value = line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]);
            http.headers.insert(name.to_ascii_lowercase(), Bytes::copy_from_slice(value));
        }
    }
    http.body = Some(Bytes::copy_from_slice(body));
    if let Ok(msg) = codec::from_http(&http) {
        let _ = ao_core::id::unsigned_id(&msg);
        // One round trip may add `body-keys` and `content-type` (a message that encodes as
        // multipart keeps them when decoded, as HyperBEAM does); from then on it is a fixpoint.
        let Some(once) = round_trip(&msg) else { return };
        let twice = round_trip(&once).expect("a re-encoded message encodes again");
        assert_eq!(twice, once, "decode → encode → decode is not stable");
    }
});

fn round_trip(msg: &ao_core::Message) -> Option<ao_core::Message> {
    let encoded = codec::to_http(msg).ok()?;
    Some(
        codec::from_http(&encoded)
            .unwrap_or_else(|e| panic!("a re-encoded message does not decode: {e}")),
    )
}
