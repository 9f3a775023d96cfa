//! POP3 grammar (RFC 1939, CAPA 2449, STLS 2595, AUTH 5034, UTF8/LANG 6856): pure functions over
//! one line, no state.

/// The commands of RFC 1939 and its extensions.
pub const KNOWN_VERBS: [&str; 17] = [
    "USER", "PASS", "APOP", "AUTH", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP",
    "QUIT", "CAPA", "STLS", "UTF8", "LANG",
];

/// `command = keyword *(SP argument)`: the keyword upper-cased and the arguments.
pub fn command_line(line: &str) -> (String, Vec<&str>) {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    (verb, words.collect())
}

/// A server line that starts a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Status<'a> {
    /// `+OK` or `-ERR`, with the RFC 2449 extended response code (`[IN-USE]`) if any.
    Done {
        ok: bool,
        code: Option<&'a str>,
        text: &'a str,
    },
    /// `"+" SP base64` (RFC 5034): a SASL challenge.
    Continue(&'a str),
}

/// `single-line = status [SP text]`; `status = "+OK" / "-ERR"`; `resp-code = "[" ... "]"`.
pub fn status_line(line: &str) -> Option<Status<'_>> {
    let after_status = |status: &str| {
        let (head, rest) = line.split_at_checked(status.len())?;
        head.eq_ignore_ascii_case(status).then_some(rest)
    };
    let (ok, rest) = if let Some(rest) = after_status("+OK") {
        (true, rest)
    } else if let Some(rest) = after_status("-ERR") {
        (false, rest)
    } else if line == "+" || line.starts_with("+ ") {
        return Some(Status::Continue(line.get(2..).unwrap_or("")));
    } else {
        return None;
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let text = rest.trim_start();
    let code = text
        .strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .map(|(code, _)| code);
    Some(Status::Done { ok, code, text })
}

/// Whether a positive reply to this command is multi-line (ends with a lone dot).
pub fn multi_line(verb: &str, args: usize) -> bool {
    match verb {
        "CAPA" | "RETR" | "TOP" => true,
        "LIST" | "UIDL" | "LANG" => args == 0,
        _ => false,
    }
}

/// The APOP timestamp of a greeting (`<process-ID.clock@hostname>`).
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let from_open = greeting.get(greeting.find('<')?..)?;
    let timestamp = from_open.get(..=from_open.find('>')?)?;
    timestamp.contains('@').then_some(timestamp)
}

/// The size a RETR reply's text announces, as in RFC 1939's `+OK 120 octets`.
pub fn octets(status_text: &str) -> Option<u64> {
    let mut words = status_text.split_whitespace();
    let size = words.next()?.parse().ok()?;
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("octets"))
        .then_some(size)
}

/// One line of a LIST or UIDL listing: `msg-number SP (size / unique-id)`.
pub fn listing_line(line: &str) -> Option<(u64, &str)> {
    let (number, value) = line.trim_end().split_once(' ')?;
    Some((number.parse().ok()?, value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retr_announces_octets() {
        let octets_of = |line| match status_line(line) {
            Some(Status::Done { text, .. }) => octets(text),
            _ => None,
        };
        assert_eq!(octets_of("+OK 120 octets"), Some(120));
        assert_eq!(octets_of("+OK 120 OCTETS follow"), Some(120));
        assert_eq!(octets_of("+OK message follows"), None);
        assert_eq!(octets_of("+OK 120"), None);
    }

    #[test]
    fn known_answers() {
        assert_eq!(command_line("retr 1"), ("RETR".to_string(), vec!["1"]));
        assert_eq!(command_line("TOP 2 5"), ("TOP".to_string(), vec!["2", "5"]));
        assert_eq!(
            status_line("+OK 2 messages"),
            Some(Status::Done {
                ok: true,
                code: None,
                text: "2 messages"
            })
        );
        assert_eq!(
            status_line("-ERR [IN-USE] locked"),
            Some(Status::Done {
                ok: false,
                code: Some("IN-USE"),
                text: "[IN-USE] locked"
            })
        );
        assert_eq!(
            status_line("+OK"),
            Some(Status::Done {
                ok: true,
                code: None,
                text: ""
            })
        );
        assert_eq!(
            status_line("+ PDEyMz4="),
            Some(Status::Continue("PDEyMz4="))
        );
        assert_eq!(status_line("+OKAY"), None);
        assert_eq!(status_line("hello"), None);
        assert!(
            multi_line("LIST", 0)
                && !multi_line("LIST", 1)
                && multi_line("TOP", 2)
                && !multi_line("DELE", 1)
        );
        assert_eq!(
            apop_timestamp("+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(apop_timestamp("+OK ready <not a stamp>"), None);
        assert_eq!(listing_line("2 3116"), Some((2, "3116")));
        assert_eq!(listing_line("x y"), None);
    }
}
