//! IMAP grammar (RFC 9051, RFC 3501 and the extensions clients use): pure functions over the
//! text of one command or response, with literals already taken out by the unit reader.

/// `command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF`:
/// the tag, the command name upper-cased (with `UID` joined: `UID FETCH`), and the arguments.
pub fn command(text: &str) -> Option<(&str, String, &str)> {
    let (tag, rest) = text.split_once(' ')?;
    let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut name = name.to_ascii_uppercase();
    let mut args = args;
    if name == "UID" {
        let (sub, more) = args.split_once(' ').unwrap_or((args, ""));
        name = format!("UID {}", sub.to_ascii_uppercase());
        args = more;
    }
    (!tag.is_empty() && !name.is_empty()).then_some((tag, name, args))
}

/// A server response, by its first token.
#[derive(Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// `continue-req = "+" SP (resp-text / base64)`
    Continue(&'a str),
    /// `response-data = "*" SP ...`
    Untagged(&'a str),
    /// `response-tagged = tag SP resp-cond-state`: tag, OK/NO/BAD, the response code if any.
    Tagged {
        tag: &'a str,
        status: String,
        code: Option<&'a str>,
    },
}

pub fn response(text: &str) -> Option<Response<'_>> {
    if text == "+" || text.starts_with("+ ") {
        return Some(Response::Continue(text.get(2..).unwrap_or("")));
    }
    if let Some(rest) = text.strip_prefix("* ") {
        return Some(Response::Untagged(rest));
    }
    let (tag, rest) = text.split_once(' ')?;
    let (status, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = status.to_ascii_uppercase();
    if !matches!(status.as_str(), "OK" | "NO" | "BAD") {
        return None;
    }
    let code = after
        .strip_prefix('[')
        .and_then(|c| c.split_once(']'))
        .map(|(c, _)| c);
    Some(Response::Tagged { tag, status, code })
}

/// `astring` arguments: atoms, quoted strings (with `\\` and `\"` escapes) and literals. A
/// literal marker `{n}` in the text stands for the next of `literals`.
pub fn astrings(args: &str, literals: &mut impl Iterator<Item = Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            '{' | '~' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push(
                    String::from_utf8_lossy(&literals.next().unwrap_or_default()).into_owned(),
                );
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

/// What a FETCH data item that carries a literal holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Section {
    /// The whole message: `BODY[]`, `RFC822`, `BINARY[]`.
    Whole,
    /// A piece of the whole message from this byte on: `BODY[]<origin>`.
    Chunk(u64),
    /// A header, text or MIME part: `BODY[HEADER]`, `RFC822.HEADER`, `BODY[1.2]`...
    Part(String),
    Other,
}

/// The data item whose literal starts at the end of `before` (`... BODY[] {775}`).
pub fn section_before_literal(before: &str) -> Section {
    let text = before.trim_end();
    let text = text
        .rsplit_once('{')
        .map_or(text, |(item, _)| item.trim_end_matches('~').trim_end());
    let upper = text.to_ascii_uppercase();
    let start = ["BODY[", "BINARY[", "RFC822"]
        .iter()
        .filter_map(|k| upper.rfind(k))
        .max();
    let Some(start) = start else {
        return Section::Other;
    };
    // ASCII upper-casing keeps every byte offset, so `start` is an offset in `text` too.
    let (Some(item), Some(original)) = (upper.get(start..), text.get(start..)) else {
        return Section::Other;
    };
    match item {
        "BODY[]" | "RFC822" | "BINARY[]" => Section::Whole,
        _ if item.starts_with("BODY[]<") || item.starts_with("BINARY[]<") => {
            let origin = item
                .split('<')
                .nth(1)
                .and_then(|o| o.trim_end_matches('>').parse().ok());
            origin.map_or(Section::Other, Section::Chunk)
        }
        _ => Section::Part(original.to_string()),
    }
}

/// An untagged update to the selected mailbox's state.
#[derive(Debug, PartialEq, Eq)]
pub enum MailboxUpdate<'a> {
    Exists(u64),
    Recent(u64),
    Expunge(u64),
    Flags(&'a str),
    /// `OK [UIDVALIDITY n]`, `[UIDNEXT n]`, `[UNSEEN n]`.
    Code(&'a str, u64),
}

/// `mailbox-data` and `message-data` that change what the mailbox holds (RFC 9051 7.3, 7.4),
/// from an untagged response without its `* `.
pub fn mailbox_update(untagged: &str) -> Option<MailboxUpdate<'_>> {
    let (first, rest) = untagged.split_once(' ').unwrap_or((untagged, ""));
    if let Ok(n) = first.parse::<u64>() {
        return match rest.to_ascii_uppercase().as_str() {
            "EXISTS" => Some(MailboxUpdate::Exists(n)),
            "RECENT" => Some(MailboxUpdate::Recent(n)),
            "EXPUNGE" => Some(MailboxUpdate::Expunge(n)),
            _ => None,
        };
    }
    if first.eq_ignore_ascii_case("FLAGS") {
        return Some(MailboxUpdate::Flags(rest));
    }
    if first.eq_ignore_ascii_case("OK") {
        let code = rest.strip_prefix('[')?.split(']').next()?;
        let (name, value) = code.split_once(' ')?;
        let name = ["UIDVALIDITY", "UIDNEXT", "UNSEEN"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(name))?;
        return Some(MailboxUpdate::Code(name, value.trim().parse().ok()?));
    }
    None
}

/// The sequence number of a FETCH response (`n FETCH (...)`, without its `* `).
pub fn fetch_seq(untagged: &str) -> Option<u64> {
    let (number, rest) = untagged.split_once(' ')?;
    let verb = rest.get(..6)?;
    verb.eq_ignore_ascii_case("FETCH ")
        .then(|| number.parse().ok())
        .flatten()
}

/// The value after a FETCH data item name (`UID 7`, `FLAGS (\Seen)`): the item must start the
/// list or follow a space, so that `X-UID` or a header field name does not count.
fn fetch_item<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    // ASCII upper-casing keeps every byte offset, so `upper`'s offsets are `text`'s.
    let upper = text.to_ascii_uppercase();
    upper.match_indices(name).find_map(|(at, _)| {
        let preceded = upper.get(..at)?.ends_with(['(', ' ']);
        let value = text.get(at + name.len()..)?.strip_prefix(' ')?;
        preceded.then_some(value)
    })
}

/// `UID n` inside a FETCH response.
pub fn fetch_uid(text: &str) -> Option<u64> {
    fetch_item(text, "UID")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `FLAGS (...)` inside a FETCH response.
pub fn fetch_flags(text: &str) -> Option<Vec<String>> {
    flag_list(fetch_item(text, "FLAGS")?.strip_prefix('(')?)
}

/// The flags an APPEND stores the message with (`mailbox (\Seen) "date" {n}`).
pub fn append_flags(args: &str) -> Option<Vec<String>> {
    flag_list(args.split_once(" (")?.1)
}

/// A flag list from after its `(`.
fn flag_list(list: &str) -> Option<Vec<String>> {
    let list = list.split_once(')')?.0;
    Some(list.split_whitespace().map(str::to_string).collect())
}

/// `<origin.length>` of a partial fetch in a command: the length asked for.
pub fn requested_length(command: &str) -> Option<u64> {
    let inner = command.split_once("]<")?.1.split('>').next()?;
    inner.split_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            command("a1 uid fetch 2 (BODY[])"),
            Some(("a1", "UID FETCH".to_string(), "2 (BODY[])"))
        );
        assert_eq!(command("a2 LOGOUT"), Some(("a2", "LOGOUT".to_string(), "")));
        assert_eq!(response("+ idling"), Some(Response::Continue("idling")));
        assert_eq!(response("* 3 EXISTS"), Some(Response::Untagged("3 EXISTS")));
        assert_eq!(
            response("a1 OK [READ-WRITE] Select completed"),
            Some(Response::Tagged {
                tag: "a1",
                status: "OK".into(),
                code: Some("READ-WRITE")
            })
        );
        assert_eq!(response("a1 MAYBE x"), None);
        let mut literals = vec![b"pa ss".to_vec()].into_iter();
        assert_eq!(
            astrings(r#"erin "a \"b\" c" {5}"#, &mut literals),
            vec!["erin", "a \"b\" c", "pa ss"]
        );
        assert_eq!(
            section_before_literal("* 1 FETCH (UID 5 BODY[] {775}"),
            Section::Whole
        );
        assert_eq!(
            section_before_literal("* 2 FETCH (UID 2 BODY[]<1000> {1000}"),
            Section::Chunk(1000)
        );
        assert_eq!(
            section_before_literal("* 2 FETCH (BODY[HEADER] {705}"),
            Section::Part("BODY[HEADER]".into())
        );
        assert_eq!(
            section_before_literal("* 2 FETCH (RFC822.HEADER {705}"),
            Section::Part("RFC822.HEADER".into())
        );
        assert_eq!(
            section_before_literal("* 2 FETCH (BINARY[] ~{7}"),
            Section::Whole
        );
        assert_eq!(
            section_before_literal("* 2 FETCH (ENVELOPE (\"x\" {3}"),
            Section::Other
        );
        assert_eq!(fetch_uid("* 2 FETCH (UID 17 FLAGS ())"), Some(17));
        assert_eq!(fetch_uid("2 FETCH (BODY[HEADER.FIELDS (X-UID)] {3}"), None);
        assert_eq!(fetch_seq("12 fetch (FLAGS ())"), Some(12));
        assert_eq!(fetch_seq("12 EXISTS"), None);
        assert_eq!(
            fetch_flags("2 FETCH (UID 3 FLAGS (\\Seen $Junk) BODY[] {4}"),
            Some(vec!["\\Seen".to_string(), "$Junk".to_string()])
        );
        assert_eq!(fetch_flags("2 FETCH (UID 3)"), None);
        assert_eq!(
            append_flags("Sent (\\Seen) \"5-Mar-2026 10:34:00 +0300\" {4}"),
            Some(vec!["\\Seen".to_string()])
        );
        assert_eq!(append_flags("Sent {4}"), None);
        assert_eq!(mailbox_update("3 EXISTS"), Some(MailboxUpdate::Exists(3)));
        assert_eq!(mailbox_update("1 expunge"), Some(MailboxUpdate::Expunge(1)));
        assert_eq!(
            mailbox_update("OK [UIDVALIDITY 1795732103] UIDs valid"),
            Some(MailboxUpdate::Code("UIDVALIDITY", 1795732103))
        );
        assert_eq!(
            mailbox_update("FLAGS (\\Seen)"),
            Some(MailboxUpdate::Flags("(\\Seen)"))
        );
        assert_eq!(mailbox_update("OK [PERMANENTFLAGS (\\*)] x"), None);
        assert_eq!(mailbox_update("2 FETCH (FLAGS ())"), None);
        assert_eq!(
            requested_length("UID FETCH 2 (UID BODY.PEEK[]<1000.1000>)"),
            Some(1000)
        );
    }
}
