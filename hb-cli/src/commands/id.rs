//! `hb-cli id FILE`: the IDs of a message.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use ao_core::codec::{self, httpsig::HttpMessage};
use ao_core::{IdScope, Message, id};
use bytes::Bytes;

/// Print the IDs of a message given as JSON (`json@1.0` or plain JSON) or as an HTTP message
/// (request or response: a start line is skipped, then headers, a blank line, the body).
#[derive(Debug, clap::Args)]
pub(crate) struct IdCommand {
    /// The file; `-` reads standard input.
    file: PathBuf,
}

impl IdCommand {
    pub(crate) fn execute(self) -> Result<()> {
        let bytes = if self.file.as_os_str() == "-" {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
            v
        } else {
            std::fs::read(&self.file).with_context(|| format!("reading {}", self.file.display()))?
        };
        let msg = parse(&bytes)?;
        println!(
            "unsigned (id none):  {}",
            id::id_string(&msg, IdScope::Unsigned)?
        );
        println!(
            "signed   (id all):   {}",
            id::id_string(&msg, IdScope::Signed)?
        );
        println!(
            "default  (id):       {}",
            id::id_string(&msg, IdScope::All)?
        );
        Ok(())
    }
}

/// A message from JSON or HTTP text.
pub(crate) fn parse(bytes: &[u8]) -> Result<Message> {
    if bytes.trim_ascii_start().starts_with(b"{") {
        return codec::from_json(bytes).context("parsing the message as JSON");
    }
    let (head, body) = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&bytes[..i], &bytes[i + 4..]),
        None => match bytes.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&bytes[..i], &bytes[i + 2..]),
            None => (bytes, &[][..]),
        },
    };
    let mut http = HttpMessage::default();
    for (n, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty()
            || (n == 0 && (line.starts_with(b"HTTP/") || line.windows(5).any(|w| w == b"HTTP/")))
        {
            continue;
        }
        let i = line
            .iter()
            .position(|&b| b == b':')
            .context("a header line without `:`")?;
        let name = std::str::from_utf8(&line[..i]).context("a header name is not UTF-8")?;
        let value = line[i + 1..].trim_ascii();
        http.headers.insert(
            name.trim().to_ascii_lowercase(),
            Bytes::copy_from_slice(value),
        );
    }
    if !body.is_empty() {
        http.body = Some(Bytes::copy_from_slice(body));
    }
    codec::from_http(&http).context("decoding the HTTP message")
}
