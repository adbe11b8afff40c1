//! Codecs as devices: `json@1.0`, `flat@1.0`, `structured@1.0`, `httpsig@1.0`.
//!
//! `serialize` encodes the base message and answers `{content-type, body}`; `deserialize`
//! decodes the request's (or the base's) `body`. This is what a path such as
//! `/<pid>~process@1.0/now/serialize~json@1.0` uses.

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value, codec};

/// One of the text codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecDevice {
    /// `json@1.0`.
    Json,
    /// `flat@1.0`.
    Flat,
    /// `structured@1.0` (serialises to JSON of the TABM, the form it is inspected in).
    Structured,
    /// `httpsig@1.0` (serialises to the HTTP header block and body).
    Httpsig,
}

impl CodecDevice {
    /// The content type of the serialised form.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json | Self::Structured => "application/json",
            Self::Flat => "text/plain",
            Self::Httpsig => "message/http",
        }
    }

    /// Serialises a message.
    pub fn serialize(self, msg: &Message) -> Result<Vec<u8>> {
        match self {
            Self::Json | Self::Structured => codec::to_json(msg),
            Self::Flat => codec::to_flat(msg),
            Self::Httpsig => {
                let http = codec::to_http(msg)?;
                let mut out = Vec::new();
                for (k, v) in &http.headers {
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(v);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
                if let Some(b) = &http.body {
                    out.extend_from_slice(b);
                }
                Ok(out)
            }
        }
    }

    /// Deserialises a message.
    pub fn deserialize(self, text: &[u8]) -> Result<Message> {
        match self {
            Self::Json | Self::Structured => codec::from_json(text),
            Self::Flat => codec::from_flat(text),
            Self::Httpsig => {
                let (head, body) = match text.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(i) => (&text[..i], &text[i + 4..]),
                    None => (text, &[][..]),
                };
                let mut http = codec::httpsig::HttpMessage::default();
                for line in head.split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.is_empty() {
                        continue;
                    }
                    let i = line
                        .windows(2)
                        .position(|w| w == b": ")
                        .ok_or_else(|| Error::BadRequest("malformed header line".into()))?;
                    let name = std::str::from_utf8(&line[..i])
                        .map_err(|_| Error::BadRequest("header name is not UTF-8".into()))?;
                    http.headers.insert(
                        name.to_ascii_lowercase(),
                        bytes::Bytes::copy_from_slice(&line[i + 2..]),
                    );
                }
                if !body.is_empty() {
                    http.body = Some(bytes::Bytes::copy_from_slice(body));
                }
                codec::from_http(&http)
            }
        }
    }
}

impl Device for CodecDevice {
    fn id(&self) -> &str {
        match self {
            Self::Json => "json@1.0",
            Self::Flat => "flat@1.0",
            Self::Structured => "structured@1.0",
            Self::Httpsig => "httpsig@1.0",
        }
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["serialize", "deserialize", "content-type"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out = match key {
            "serialize" => {
                let target = base.clone().without("device");
                self.serialize(&target).map(|body| {
                    Value::Message(
                        Message::new()
                            .with("content-type", self.content_type())
                            .with("body", body),
                    )
                })
            }
            "deserialize" => {
                let body = request.get("body").or_else(|| base.get("body"));
                match body {
                    Some(Value::Binary(b)) => self.deserialize(b).map(Value::Message),
                    _ => Err(Error::BadRequest(
                        "deserialize needs a binary `body`".into(),
                    )),
                }
            }
            "content-type" => Ok(Value::from(self.content_type())),
            _ => return None,
        };
        Some(Box::pin(async move { out }))
    }
}
