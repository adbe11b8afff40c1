//! The subset of HTTP Structured Field Values (RFC 8941) HyperBEAM uses, with its relaxations
//! (spec §5.1.4).
//!
//! Parsing is strict RFC 8941 except that dictionary and parameter keys may contain upper-case
//! letters and `%` (HyperBEAM relies on this for escaped and ID-shaped keys). Serialisation of
//! strings escapes only `\` and `"` and does not validate, as HyperBEAM does (spec §11 item 19).

use base64::Engine as _;

use crate::{Error, Result};

/// Maximum digits of an SF integer (RFC 8941; HyperBEAM's decoder enforces it).
pub const MAX_INTEGER_DIGITS: usize = 15;

/// A bare item.
#[derive(Debug, Clone, PartialEq)]
pub enum BareItem {
    /// `-?[0-9]{1,15}`.
    Integer(i64),
    /// A decimal number.
    Decimal(f64),
    /// A quoted string (unescaped bytes).
    String(Vec<u8>),
    /// A token.
    Token(String),
    /// A byte sequence (`:base64:`).
    Bytes(Vec<u8>),
    /// `?1` / `?0`.
    Boolean(bool),
}

impl BareItem {
    /// The text of a string or token.
    pub fn as_text(&self) -> Option<&[u8]> {
        match self {
            Self::String(s) => Some(s),
            Self::Token(t) => Some(t.as_bytes()),
            _ => None,
        }
    }
}

/// Parameters: ordered `;key=value` pairs.
pub type Params = Vec<(String, BareItem)>;

/// Where each key of a growing list of unique keys is, once the list is long enough for a
/// linear search to matter: a dictionary or parameter list of n distinct keys costs O(n), not
/// O(n²) (an `ao-types` of a million keys was minutes of comparisons).
#[derive(Default)]
struct KeyIndex {
    at: Option<std::collections::HashMap<String, usize>>,
}

impl KeyIndex {
    /// Keys a list holds before it is indexed.
    const LINEAR: usize = 16;

    /// Sets `key` to `value`: a key already present keeps its position and takes the new value
    /// (RFC 8941: the last value wins), a new key is appended.
    fn upsert<V>(&mut self, list: &mut Vec<(String, V)>, key: String, value: V) {
        if self.at.is_none() && list.len() >= Self::LINEAR {
            self.at = Some(
                list.iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect(),
            );
        }
        let found = match &self.at {
            Some(at) => at.get(&key).copied(),
            None => list.iter().position(|(k, _)| *k == key),
        };
        match found {
            Some(i) => list[i].1 = value,
            None => {
                if let Some(at) = &mut self.at {
                    at.insert(key.clone(), list.len());
                }
                list.push((key, value));
            }
        }
    }
}

/// An item with parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The value.
    pub bare: BareItem,
    /// Its parameters.
    pub params: Params,
}

/// A list or dictionary member.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// A single item.
    Item(Item),
    /// An inner list `( … )` with parameters.
    InnerList(Vec<Item>, Params),
}

impl Member {
    /// The item, if the member is not an inner list.
    pub fn as_item(&self) -> Option<&Item> {
        match self {
            Self::Item(i) => Some(i),
            Self::InnerList(..) => None,
        }
    }

    /// The member's parameters.
    pub fn params(&self) -> &Params {
        match self {
            Self::Item(i) => &i.params,
            Self::InnerList(_, p) => p,
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        let mut p = Self { input, pos: 0 };
        p.skip_sp();
        p
    }

    fn err(&self, reason: &'static str) -> Error {
        Error::sf(self.input, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.skip_sp();
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters"))
        }
    }

    fn key(&mut self) -> Result<String> {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_key_start(c) => {}
            _ => return Err(self.err("expected a key")),
        }
        while let Some(c) = self.peek() {
            if is_key_char(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        // The key bytes are ASCII by construction.
        Ok(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn params(&mut self) -> Result<Params> {
        let mut params = Vec::new();
        let mut index = KeyIndex::default();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let k = self.key()?;
            let v = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            index.upsert(&mut params, k, v);
        }
        Ok(params)
    }

    fn item(&mut self) -> Result<Item> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn member(&mut self) -> Result<Member> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    let params = self.params()?;
                    return Ok(Member::InnerList(items, params));
                }
                items.push(self.item()?);
                match self.peek() {
                    Some(b' ' | b')') => {}
                    _ => return Err(self.err("malformed inner list")),
                }
            }
        }
        Ok(Member::Item(self.item()?))
    }

    fn bare_item(&mut self) -> Result<BareItem> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => {
                self.pos += 1;
                let b = match self.peek() {
                    Some(b'1') => true,
                    Some(b'0') => false,
                    _ => return Err(self.err("malformed boolean")),
                };
                self.pos += 1;
                Ok(BareItem::Boolean(b))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => self.token(),
            _ => Err(self.err("expected an item")),
        }
    }

    fn number(&mut self) -> Result<BareItem> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut dot = None;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.pos += 1;
            } else if c == b'.' && dot.is_none() {
                dot = Some(self.pos);
                self.pos += 1;
            } else {
                break;
            }
        }
        let text = &self.input[digits_start..self.pos];
        if text.is_empty() || !text[0].is_ascii_digit() {
            return Err(self.err("malformed number"));
        }
        let s = std::str::from_utf8(&self.input[start..self.pos])
            .map_err(|_| self.err("bad number"))?;
        match dot {
            None => {
                if text.len() > MAX_INTEGER_DIGITS {
                    return Err(self.err("integer longer than 15 digits"));
                }
                s.parse()
                    .map(BareItem::Integer)
                    .map_err(|_| self.err("malformed integer"))
            }
            Some(d) => {
                let int_len = d - digits_start;
                let frac_len = self.pos - d - 1;
                if int_len > 12 || frac_len == 0 || frac_len > 3 {
                    return Err(self.err("malformed decimal"));
                }
                s.parse()
                    .map(BareItem::Decimal)
                    .map_err(|_| self.err("malformed decimal"))
            }
        }
    }

    fn string(&mut self) -> Result<BareItem> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(BareItem::String(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err(self.err("bad escape in string")),
                    }
                }
                Some(c) if (0x20..=0x7e).contains(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("invalid character in string")),
            }
        }
    }

    fn token(&mut self) -> Result<BareItem> {
        let start = self.pos;
        self.pos += 1;
        while let Some(c) = self.peek() {
            if is_tchar(c) || c == b':' || c == b'/' {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(BareItem::Token(
            String::from_utf8_lossy(&self.input[start..self.pos]).into_owned(),
        ))
    }

    fn bytes(&mut self) -> Result<BareItem> {
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b':' {
                break;
            }
            if !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) {
                return Err(self.err("invalid byte sequence"));
            }
            self.pos += 1;
        }
        if self.peek() != Some(b':') {
            return Err(self.err("unterminated byte sequence"));
        }
        let text = &self.input[start..self.pos];
        self.pos += 1;
        let decoded = base64::engine::general_purpose::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        )
        .decode(text)
        .map_err(|_| self.err("invalid base64 in byte sequence"))?;
        Ok(BareItem::Bytes(decoded))
    }
}

/// Whether a key may start with `c`. Keys are read as HyperBEAM writes them: any case, and
/// digits, `%`, `_` and `-` first as well as RFC 8941's lower-case letters and `*`.
fn is_key_start(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'*' | b'%' | b'_' | b'-')
}

/// Whether `c` may follow the first byte of a key.
fn is_key_char(c: u8) -> bool {
    is_key_start(c) || c == b'.'
}

/// Whether [`parse_dictionary`] (and the parameter parser) read `key` back as a key.
pub fn is_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(is_key_start) && bytes.all(is_key_char)
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Parses an SF item.
pub fn parse_item(input: &[u8]) -> Result<Item> {
    let mut p = Parser::new(input);
    let item = p.item()?;
    p.finish()?;
    Ok(item)
}

/// Parses an SF list.
pub fn parse_list(input: &[u8]) -> Result<Vec<Member>> {
    let mut p = Parser::new(input);
    let mut out = Vec::new();
    if p.pos == input.len() {
        return Ok(out);
    }
    loop {
        out.push(p.member()?);
        p.skip_ows();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => {
                p.pos += 1;
                p.skip_ows();
                if p.peek().is_none() {
                    return Err(p.err("trailing comma"));
                }
            }
            Some(_) => return Err(p.err("expected a comma")),
        }
    }
}

/// Parses an SF dictionary, keeping member order (a repeated key keeps its first position and
/// its last value, as RFC 8941 says).
pub fn parse_dictionary(input: &[u8]) -> Result<Vec<(String, Member)>> {
    let mut p = Parser::new(input);
    let mut out: Vec<(String, Member)> = Vec::new();
    let mut index = KeyIndex::default();
    if p.pos == input.len() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let member = if p.peek() == Some(b'=') {
            p.pos += 1;
            p.member()?
        } else {
            let params = p.params()?;
            Member::Item(Item {
                bare: BareItem::Boolean(true),
                params,
            })
        };
        index.upsert(&mut out, key, member);
        p.skip_ows();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => {
                p.pos += 1;
                p.skip_ows();
                if p.peek().is_none() {
                    return Err(p.err("trailing comma"));
                }
            }
            Some(_) => return Err(p.err("expected a comma")),
        }
    }
}

/// Appends `s` as an SF string: quoted, with only `\` and `"` escaped (no validation).
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// `s` as an SF string.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_string(&mut out, s);
    out
}

/// Appends a bare item.
pub fn write_bare_item(out: &mut Vec<u8>, item: &BareItem) {
    match item {
        BareItem::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        BareItem::Decimal(d) => out.extend_from_slice(format_decimal(*d).as_bytes()),
        BareItem::String(s) => write_string(out, s),
        BareItem::Token(t) => out.extend_from_slice(t.as_bytes()),
        BareItem::Bytes(b) => {
            out.push(b':');
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.push(b':');
        }
        BareItem::Boolean(b) => out.extend_from_slice(if *b { b"?1" } else { b"?0" }),
    }
}

/// Appends parameters (`;k` for `true`, else `;k=v`).
pub fn write_params(out: &mut Vec<u8>, params: &Params) {
    for (k, v) in params {
        out.push(b';');
        out.extend_from_slice(k.as_bytes());
        if *v != BareItem::Boolean(true) {
            out.push(b'=');
            write_bare_item(out, v);
        }
    }
}

/// Appends a member (item or inner list).
pub fn write_member(out: &mut Vec<u8>, m: &Member) {
    match m {
        Member::Item(i) => {
            write_bare_item(out, &i.bare);
            write_params(out, &i.params);
        }
        Member::InnerList(items, params) => {
            out.push(b'(');
            for (n, i) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b' ');
                }
                write_bare_item(out, &i.bare);
                write_params(out, &i.params);
            }
            out.push(b')');
            write_params(out, params);
        }
    }
}

/// Serialises a dictionary (members joined by `", "`; `true` items as bare keys).
pub fn serialize_dictionary(members: &[(String, Member)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, (k, m)) in members.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(k.as_bytes());
        if let Member::Item(Item {
            bare: BareItem::Boolean(true),
            params,
        }) = m
        {
            write_params(&mut out, params);
        } else {
            out.push(b'=');
            write_member(&mut out, m);
        }
    }
    out
}

/// Serialises a list.
pub fn serialize_list(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, m) in members.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        write_member(&mut out, m);
    }
    out
}

/// Cowlib's decimal: at most three fractional digits, rounded half-up, trailing zeros dropped
/// (but at least one fractional digit).
fn format_decimal(d: f64) -> String {
    let s = format!("{:.3}", (d * 1000.0).round() / 1000.0);
    let trimmed = s.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Dictionaries and parameter lists of any length, with repeated keys, parse as a
        /// naive model says: first position, last value (RFC 8941 §4.2.2).
        #[test]
        fn repeated_keys_keep_their_first_position_and_last_value(
            keys in proptest::collection::vec(0u8..40, 0..120),
        ) {
            let mut model: Vec<(String, i64)> = Vec::new();
            let mut dict = Vec::new();
            let mut params = String::from("x");
            for (n, k) in keys.iter().enumerate() {
                let k = format!("k{k}");
                match model.iter_mut().find(|(mk, _)| *mk == k) {
                    Some(slot) => slot.1 = n as i64,
                    None => model.push((k.clone(), n as i64)),
                }
                dict.push(format!("{k}={n}"));
                params.push_str(&format!(";{k}={n}"));
            }
            let parsed: Vec<(String, i64)> = parse_dictionary(dict.join(", ").as_bytes())
                .unwrap()
                .into_iter()
                .map(|(k, m)| match m {
                    Member::Item(Item { bare: BareItem::Integer(i), .. }) => (k, i),
                    other => panic!("{other:?}"),
                })
                .collect();
            proptest::prop_assert_eq!(&parsed, &model);
            let item = parse_item(params.as_bytes()).unwrap();
            let params: Vec<(String, i64)> = item
                .params
                .into_iter()
                .map(|(k, b)| match b {
                    BareItem::Integer(i) => (k, i),
                    other => panic!("{other:?}"),
                })
                .collect();
            proptest::prop_assert_eq!(&params, &model);
        }
    }

    /// A dictionary of 200,000 distinct keys parses whole (it took minutes while duplicate
    /// keys were found by a linear search).
    #[test]
    fn a_long_dictionary_parses() {
        let text: Vec<String> = (0..200_000).map(|i| format!("k{i}=\"t{i}\"")).collect();
        let dict = parse_dictionary(text.join(", ").as_bytes()).unwrap();
        assert_eq!(dict.len(), 200_000);
        assert_eq!(dict[123_456].0, "k123456");
    }

    /// `is_key` says yes exactly when the dictionary parser reads the whole key back.
    #[test]
    fn is_key_agrees_with_the_parser() {
        let bytes: Vec<u8> = (0x20..0x7f).collect();
        let mut keys: Vec<String> = Vec::new();
        for &a in &bytes {
            keys.push(char::from(a).to_string());
            for &b in &bytes {
                keys.push(format!("{}{}", char::from(a), char::from(b)));
            }
        }
        keys.push(String::new());
        for key in keys {
            let parsed = parse_dictionary(format!("{key}=1").as_bytes())
                .is_ok_and(|d| d.len() == 1 && d[0].0 == key);
            assert_eq!(is_key(&key), parsed, "{key:?}");
        }
    }

    #[test]
    fn dictionary_relaxed_keys_and_tokens() {
        let d = parse_dictionary(b"count=integer, f=\"float\", %53eq=\"x\", ABC=1").unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(
            d[0].1.as_item().unwrap().bare,
            BareItem::Token("integer".into())
        );
        assert_eq!(d[2].0, "%53eq");
        assert_eq!(d[3].0, "ABC");
    }

    #[test]
    fn integers_limited_to_15_digits() {
        assert!(parse_item(b"123456789012345").is_ok());
        assert!(parse_item(b"1234567890123456").is_err());
    }

    #[test]
    fn signature_input_round_trip() {
        let text = b"sig=(\"a\" \"@path\");alg=\"rsa-pss-sha512\";keyid=\"abc\"";
        let d = parse_dictionary(text).unwrap();
        assert_eq!(serialize_dictionary(&d), text);
    }

    #[test]
    fn strings_escape_only_quote_and_backslash() {
        assert_eq!(string(b"say \"hi\" \\"), b"\"say \\\"hi\\\" \\\\\"");
    }
}
