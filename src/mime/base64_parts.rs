//! Base64 attachments decoded in bulk instead of by mail-parser, whose MIME decoder goes a byte
//! at a time (about 340 MB/s, most of the CPU on attachment-heavy captures).
//!
//! mail-parser stays the judge of the MIME structure. We hand it a copy of the message in which
//! each part that looks binary has its `Content-Transfer-Encoding: base64` line renamed
//! `binary` and its body (up to the next line starting with `--`) taken out, so that it finds
//! the part's end at once; we decode the bodies we took with a bulk decoder. The result is kept
//! only where it must equal mail-parser's own decoding: each renamed line in the header of a
//! binary part that took no other encoding, whose body in the copy starts where ours was taken
//! out and holds nothing but line breaks, and each body plain padded base64 between line
//! breaks. A message cut short (a capture that ends mid-transfer) has no boundary after its
//! last part: mail-parser reads that part's base64 to the end, fails, and keeps the text as
//! it is; we keep the same text without the wasted reading. Anything else (nested messages,
//! text parts, stray characters, unpadded ends) goes back to mail-parser on the original
//! bytes.

use mail_parser::{Encoding, Message, MessagePartId, MimeHeaders, PartType};
use std::collections::BTreeMap;
use std::ops::Range;

const ENCODING_LINE: &[u8] = b"\nContent-Transfer-Encoding: base64";
const DISGUISE: &[u8] = b"binary";
/// How far from the encoding line we look for the part's Content-Type, in lines each way.
const MAX_HEADER_LINES: usize = 64;

/// A copy of a message with the base64 bodies of its binary parts taken out.
pub struct Disguised {
    pub bytes: Vec<u8>,
    taken: Vec<TakenBody>,
}

/// One body taken out of the copy.
struct TakenBody {
    /// The renamed encoding value, in the copy.
    renamed: usize,
    /// Where the body was, in the copy.
    at: usize,
    /// Where it was, in the original.
    original: Range<usize>,
}

/// The decoded bodies of the parts we took out, by part id.
pub type DecodedParts = BTreeMap<MessagePartId, Vec<u8>>;

/// The copy to parse, if any part is worth decoding ourselves.
pub fn disguise(raw: &[u8]) -> Option<Disguised> {
    let mut bytes = Vec::new();
    let mut taken = Vec::new();
    let mut copied = 0;
    for line in memchr::memmem::find_iter(raw, ENCODING_LINE) {
        // A line inside a body already taken out is not a header.
        if line < copied {
            continue;
        }
        let value = line + ENCODING_LINE.len() - DISGUISE.len();
        let Some(body) = binary_body(raw, value) else {
            continue;
        };
        bytes.extend_from_slice(raw.get(copied..value)?);
        let renamed = bytes.len();
        bytes.extend_from_slice(DISGUISE);
        bytes.extend_from_slice(raw.get(value + DISGUISE.len()..body.start)?);
        taken.push(TakenBody {
            renamed,
            at: bytes.len(),
            original: body.clone(),
        });
        copied = body.end;
    }
    if taken.is_empty() {
        return None;
    }
    bytes.extend_from_slice(raw.get(copied..)?);
    Some(Disguised { bytes, taken })
}

/// Decodes the bodies taken out of `disguised.bytes`, which `message` was parsed from; None
/// when the result could differ from mail-parser's own, so the caller parses the original.
pub fn decode(raw: &[u8], message: &Message<'_>, disguised: &Disguised) -> Option<DecodedParts> {
    let mut decoded = DecodedParts::new();
    for taken in &disguised.taken {
        // Parts are listed in the order of their headers: the last one starting at or before
        // the renamed value is the only one whose header can hold it.
        let index = message
            .parts
            .partition_point(|part| part.offset_header as usize <= taken.renamed)
            .checked_sub(1)?;
        let part = message.parts.get(index)?;
        let in_header =
            (part.offset_header as usize..part.offset_body as usize).contains(&taken.renamed);
        if !in_header || part.offset_body as usize != taken.at || part.encoding != Encoding::None {
            return None;
        }
        let body = raw.get(taken.original.clone())?;
        let bytes = match &part.body {
            PartType::Binary(left) | PartType::InlineBinary(left)
                if !part.is_encoding_problem && only_line_breaks(left) =>
            {
                decode_lines(body)?
            }
            // A message cut short: no boundary after the last part. mail-parser then fails to
            // decode it (at the end, after reading it all) and keeps its text as it is, as
            // text in the part's charset: the same bytes when there is none and the text is
            // only base64.
            PartType::Text(left)
                if part.is_encoding_problem
                    && taken.original.end == raw.len()
                    && only_line_breaks(left.as_bytes())
                    && part
                        .content_type()
                        .and_then(|ct| ct.attribute("charset"))
                        .is_none()
                    && is_base64_text(body) =>
            {
                body.to_vec()
            }
            _ => return None,
        };
        decoded.insert(MessagePartId::try_from(index).ok()?, bytes);
    }
    Some(decoded)
}

fn only_line_breaks(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Whether `text` holds only base64 characters and line breaks. It runs over whole
/// attachments, so each byte's test has no branches (the compiler vectorises it) and the
/// answer is checked a block at a time.
fn is_base64_text(text: &[u8]) -> bool {
    text.chunks(256).all(|block| {
        block
            .iter()
            .fold(true, |ok, &b| ok & is_base64_text_byte(b))
    })
}

fn is_base64_text_byte(b: u8) -> bool {
    b.is_ascii_uppercase()
        | b.is_ascii_lowercase()
        | b.is_ascii_digit()
        | (b == b'+')
        | (b == b'/')
        | (b == b'=')
        | (b == b'\r')
        | (b == b'\n')
}

/// Base64 text broken into lines by CRLF or LF; None for any other byte outside the alphabet.
fn decode_lines(body: &[u8]) -> Option<Vec<u8>> {
    let mut joined = Vec::with_capacity(body.len());
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body).chain([body.len()]) {
        let line = body.get(start..end)?;
        joined.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        start = end + 1;
    }
    // Padding required, as mail-parser drops an unpadded last group.
    base64_simd::STANDARD.decode_to_vec(&joined).ok()
}

/// The body of the part whose encoding value is at `value`, if its header names a
/// Content-Type that mail-parser keeps as bytes: from after the header's blank line to the end
/// of the line before the next line starting with `--` (or to the end). A guess that saves a
/// wasted parse: [`decode`] checks the outcome.
fn binary_body(raw: &[u8], value: usize) -> Option<Range<usize>> {
    let line_start = value + DISGUISE.len() - ENCODING_LINE.len() + 1;
    let above = raw
        .get(..line_start.checked_sub(1)?)?
        .rsplit(|&b| b == b'\n')
        .take(MAX_HEADER_LINES)
        .take_while(|line| !is_blank(line) && !line.starts_with(b"--"));
    let mut below = Vec::new();
    let mut start = line_start;
    let body_start = loop {
        let end = start + memchr::memchr(b'\n', raw.get(start..)?)?;
        let line = raw.get(start..end)?;
        if is_blank(line) {
            break end + 1;
        }
        if below.len() == MAX_HEADER_LINES {
            return None;
        }
        below.push(line);
        start = end + 1;
    };
    // The encoding line itself must end at the value: no trailing words, no folded line.
    let encoding_line = below.first()?;
    let encoding_line = encoding_line.strip_suffix(b"\r").unwrap_or(encoding_line);
    if encoding_line.len() != value + DISGUISE.len() - line_start
        || below
            .get(1)
            .is_some_and(|next| next.starts_with(b" ") || next.starts_with(b"\t"))
    {
        return None;
    }
    let mut types = above.chain(below).filter_map(content_type_of);
    let binary = match (types.next(), types.next()) {
        (Some(kind), None) => !["text", "multipart", "message"]
            .iter()
            .any(|t| kind.eq_ignore_ascii_case(t.as_bytes())),
        _ => false,
    };
    if !binary {
        return None;
    }
    let rest = raw.get(body_start..)?;
    let body_end = memchr::memmem::find(rest, b"\n--").map_or(raw.len(), |nl| {
        let line_end = body_start + nl;
        line_end - usize::from(rest.get(nl.wrapping_sub(1)) == Some(&b'\r'))
    });
    Some(body_start..body_end)
}

fn is_blank(line: &[u8]) -> bool {
    line.strip_suffix(b"\r").unwrap_or(line).is_empty()
}

/// The type (before the slash) of a `Content-Type:` line.
fn content_type_of(line: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"content-type:";
    let value = line
        .get(..NAME.len())
        .filter(|name| name.eq_ignore_ascii_case(NAME))
        .and_then(|_| line.get(NAME.len()..))?;
    let value = value.trim_ascii_start();
    let slash = memchr::memchr(b'/', value)?;
    value.get(..slash).filter(|kind| !kind.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    #[test]
    fn takes_out_only_binary_bodies() {
        let raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
            Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b\r\n\
            Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            JVBE\r\nRi0x\r\n--b--\r\n";
        let disguised = disguise(raw).expect("the pdf part");
        assert_eq!(
            disguised.taken.len(),
            1,
            "the text part is left to mail-parser"
        );
        let copy = String::from_utf8_lossy(&disguised.bytes);
        assert!(copy.contains("text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGk="));
        assert!(copy.ends_with(
            "application/pdf\r\nContent-Transfer-Encoding: binary\r\n\r\n\r\n--b--\r\n"
        ));
        let message = mail_parser::MessageParser::default()
            .parse(&disguised.bytes)
            .expect("parses");
        let decoded = decode(raw, &message, &disguised).expect("decoded by us");
        assert_eq!(decoded.values().collect::<Vec<_>>(), [b"%PDF-1"]);
    }

    #[test]
    fn decodes_lines_strictly() {
        assert_eq!(decode_lines(b"aGVs\r\nbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_lines(b"aGVs\nbG8=\n"), Some(b"hello".to_vec()));
        assert_eq!(
            decode_lines(b"aGVsbG8"),
            None,
            "unpadded: mail-parser drops the tail"
        );
        assert_eq!(
            decode_lines(b"aGVs bG8="),
            None,
            "a space: left to mail-parser"
        );
        assert_eq!(decode_lines(b"aGk=aGk="), None, "padding in the middle");
    }

    /// A part of a generated message: its type, its encoding, its payload, and a flaw.
    #[derive(Clone, Debug)]
    struct GenPart {
        content_type: &'static str,
        encoding: &'static str,
        payload: Vec<u8>,
        line_len: usize,
        flaw: Option<(usize, &'static [u8])>,
        name: bool,
    }

    fn gen_part() -> impl Strategy<Value = GenPart> {
        (
            prop::sample::select(vec![
                "application/octet-stream",
                "application/octet-stream; charset=utf-7",
                "image/png",
                "application/pdf; name=\"r.pdf\"",
                "text/plain; charset=utf-8",
                "text/html",
                "message/rfc822",
                "message/delivery-status",
                "multipart/mixed; boundary=\"inner\"",
            ]),
            prop::sample::select(vec!["base64", "base64", "7bit", "quoted-printable"]),
            prop::collection::vec(any::<u8>(), 0..400),
            prop::sample::select(vec![76usize, 64, 4, 7, 1000]),
            prop::option::weighted(
                0.3,
                (
                    any::<usize>(),
                    prop::sample::select(vec![
                        &b"-"[..],
                        b" ",
                        b"\t",
                        b"=",
                        b"\x0c",
                        b"!",
                        b"\r\n--x\r\n",
                        b"\r\n--b\r\n",
                        b"\r\n\r\n",
                        b"\n",
                    ]),
                ),
            ),
            any::<bool>(),
        )
            .prop_map(
                |(content_type, encoding, payload, line_len, flaw, name)| GenPart {
                    content_type,
                    encoding,
                    payload,
                    line_len,
                    flaw,
                    name,
                },
            )
    }

    fn body_of(part: &GenPart, newline: &[u8]) -> Vec<u8> {
        let mut text = match part.encoding {
            "base64" => base64::engine::general_purpose::STANDARD.encode(&part.payload),
            _ => String::from_utf8_lossy(&part.payload).replace(['\r', '\n', '-'], "_"),
        }
        .into_bytes();
        if part.content_type == "message/rfc822" {
            let inner = format!(
                "Subject: inner\r\nContent-Type: application/zip\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                base64::engine::general_purpose::STANDARD.encode(&part.payload)
            );
            text = inner.into_bytes();
        }
        let mut body = Vec::new();
        for line in text.chunks(part.line_len) {
            body.extend_from_slice(line);
            body.extend_from_slice(newline);
        }
        if let Some((at, flaw)) = part.flaw {
            let at = at % (body.len() + 1);
            body.splice(at..at, flaw.iter().copied());
        }
        body
    }

    fn message(parts: &[GenPart], lf_only: bool, closed: bool) -> Vec<u8> {
        let nl: &[u8] = if lf_only { b"\n" } else { b"\r\n" };
        let mut out = b"From: a@example.test\r\nSubject: props\r\n".to_vec();
        out.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
        for part in parts {
            out.extend_from_slice(b"--b\r\n");
            out.extend_from_slice(format!("Content-Type: {}\r\n", part.content_type).as_bytes());
            if part.name {
                out.extend_from_slice(b"Content-Disposition: attachment; filename=a.bin\r\n");
            }
            out.extend_from_slice(
                format!("Content-Transfer-Encoding: {}\r\n\r\n", part.encoding).as_bytes(),
            );
            out.extend_from_slice(&body_of(part, nl));
        }
        if closed {
            out.extend_from_slice(b"--b--\r\n");
        }
        out
    }

    proptest! {
        /// Whatever the message, the view equals the one from mail-parser's own decoding.
        #[test]
        fn same_view_as_mail_parser_alone(
            parts in prop::collection::vec(gen_part(), 0..5),
            lf_only in any::<bool>(),
            closed in any::<bool>(),
            cut in any::<usize>(),
        ) {
            let mut raw = message(&parts, lf_only, closed);
            // A message cut short, as a capture that ends mid-transfer leaves it.
            if !closed && cut % 2 == 0 {
                raw.truncate(cut / 2 % (raw.len() + 1));
            }
            let alone = mail_parser::MessageParser::default()
                .parse(&raw)
                .map(|m| super::super::view(&m, DecodedParts::new()))
                .unwrap_or_default();
            prop_assert_eq!(super::super::parse(&raw), alone);
        }
    }
}
