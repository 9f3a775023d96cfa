//! SMTP grammar (RFC 5321 and the extensions mail clients use): pure functions over one line,
//! no state. Lenient where real clients are (lower-case verbs, no space after `FROM:`), and
//! returning what did not parse rather than failing.

/// The commands of RFC 5321, of the older RFCs (821: SEND, SOML, SAML, TURN; 1985: ETRN;
/// 2645: ATRN) and of the extensions (3030: BDAT; 3207: STARTTLS; 4954: AUTH).
pub const KNOWN_VERBS: [&str; 21] = [
    "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "VRFY", "EXPN", "HELP", "NOOP", "QUIT",
    "SEND", "SOML", "SAML", "TURN", "ETRN", "ATRN", "STARTTLS", "AUTH", "LHLO",
];

/// `command = verb [SP parameters]`: the verb upper-cased and the rest of the line.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandLine<'a> {
    pub verb: String,
    pub args: &'a str,
    pub known: bool,
}

/// Splits a command line (without CRLF). The verb is the first word; anything is accepted so
/// that unknown commands are kept verbatim.
pub fn command_line(line: &str) -> CommandLine<'_> {
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let verb = verb.to_ascii_uppercase();
    let known = KNOWN_VERBS.contains(&verb.as_str());
    CommandLine {
        verb,
        args: args.trim_start(),
        known,
    }
}

/// Whether a line looks like a command: what a dialogue resynchronises on after a gap.
pub fn looks_like_command(line: &str) -> bool {
    command_line(line).known
}

/// `Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF`
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: &'a str,
    /// False for the continuation lines of a multi-line reply (`250-`).
    pub last: bool,
    pub text: &'a str,
}

/// `Reply-code = %x32-35 %x30-35 %x30-39`. Accepts any three digits, as servers do send others.
pub fn reply_line(line: &str) -> Option<ReplyLine<'_>> {
    let (code, rest) = line.split_at_checked(3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match rest.as_bytes().first() {
        None => Some(ReplyLine {
            code,
            last: true,
            text: "",
        }),
        Some(b' ') => Some(ReplyLine {
            code,
            last: true,
            text: rest.get(1..)?,
        }),
        Some(b'-') => Some(ReplyLine {
            code,
            last: false,
            text: rest.get(1..)?,
        }),
        _ => None,
    }
}

/// `status-code = class "." subject "." detail` (RFC 3463): class 2, 4 or 5, then 1 to 3 digits
/// and 1 to 3 digits, at the start of a reply's text.
pub fn enhanced_status(text: &str) -> Option<&str> {
    let code = text.split(' ').next()?;
    let mut parts = code.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3))
    .then_some(code)
}

/// The address of `MAIL FROM:` or `RCPT TO:` and what follows it.
#[derive(Debug, PartialEq, Eq)]
pub struct PathArg<'a> {
    /// The mailbox, without angle brackets (empty for the null sender `<>`).
    pub mailbox: &'a str,
    /// An RFC 821 source route (`<@relay1,@relay2:user@host>`): the relays, in order.
    pub route: Vec<&'a str>,
    /// Parameters after the path, like `SIZE=1234` or `NOTIFY=FAILURE`.
    pub params: Vec<&'a str>,
}

/// `Mail-parameters` after `"FROM:" Reverse-path`, or `"TO:" Forward-path`; `keyword` is `FROM` or
/// `TO`. Accepts a space after the colon and a path without brackets.
pub fn path_arg<'a>(args: &'a str, keyword: &str) -> Option<PathArg<'a>> {
    let (prefix, rest) = args.split_at_checked(keyword.len() + 1)?;
    if !prefix.eq_ignore_ascii_case(&format!("{keyword}:")) {
        return None;
    }
    let rest = rest.trim_start();
    let (path, params) = match rest.strip_prefix('<') {
        Some(inner) => inner.split_once('>')?,
        None => rest.split_once(' ').unwrap_or((rest, "")),
    };
    let (route, mailbox) = match path.strip_prefix('@') {
        Some(_) => match path.split_once(':') {
            Some((route, mailbox)) => (
                route
                    .split(',')
                    .map(|r| r.trim_start_matches('@'))
                    .collect(),
                mailbox,
            ),
            None => (Vec::new(), path),
        },
        None => (Vec::new(), path),
    };
    Some(PathArg {
        mailbox,
        route,
        params: params.split_whitespace().collect(),
    })
}

/// The message size a `MAIL FROM` announces: `size-param = "SIZE=" size-value` (RFC 1870).
pub fn size_param(params: &[&str]) -> Option<u64> {
    params.iter().find_map(|param| {
        let (keyword, value) = param.split_once('=')?;
        keyword
            .eq_ignore_ascii_case("SIZE")
            .then(|| value.parse().ok())?
    })
}

/// `bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]` (RFC 3030).
pub fn bdat_args(args: &str) -> Option<(u64, bool)> {
    let mut words = args.split_whitespace();
    let size = words.next()?.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

/// `"AUTH" SP sasl-mech [SP initial-response]` (RFC 4954).
pub fn auth_args(args: &str) -> Option<(&str, Option<&str>)> {
    let mut words = args.split_whitespace();
    let mechanism = words.next()?;
    Some((mechanism, words.next()))
}

/// The EHLO keywords (`ehlo-line = ehlo-keyword *( SP / "=" ) ehlo-param`): every line of a 250
/// reply after the first, upper-cased keyword first.
pub fn ehlo_keywords<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    lines
        .skip(1)
        .map(|line| {
            let text = line.get(4..).unwrap_or("");
            match text.split_once([' ', '=']) {
                Some((keyword, params)) => format!("{} {}", keyword.to_ascii_uppercase(), params),
                None => text.to_ascii_uppercase(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            command_line("ehlo client.example"),
            CommandLine {
                verb: "EHLO".into(),
                args: "client.example",
                known: true
            }
        );
        assert_eq!(
            command_line("XYZZY plugh"),
            CommandLine {
                verb: "XYZZY".into(),
                args: "plugh",
                known: false
            }
        );
        assert_eq!(
            command_line("QUIT"),
            CommandLine {
                verb: "QUIT".into(),
                args: "",
                known: true
            }
        );
        assert!(!looks_like_command("Subject: hello"));
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply_line("250-PIPELINING"),
            Some(ReplyLine {
                code: "250",
                last: false,
                text: "PIPELINING"
            })
        );
        assert_eq!(
            reply_line("250 2.1.0 Ok"),
            Some(ReplyLine {
                code: "250",
                last: true,
                text: "2.1.0 Ok"
            })
        );
        assert_eq!(
            reply_line("354"),
            Some(ReplyLine {
                code: "354",
                last: true,
                text: ""
            })
        );
        assert_eq!(reply_line("25x Ok"), None);
        assert_eq!(reply_line("2500"), None);
        assert_eq!(enhanced_status("5.7.1 Relay access denied"), Some("5.7.1"));
        assert_eq!(enhanced_status("2.0.0"), Some("2.0.0"));
        assert_eq!(enhanced_status("Ok: queued"), None);
        assert_eq!(enhanced_status("3.1.0 x"), None);
    }

    #[test]
    fn size_params() {
        assert_eq!(
            size_param(&["BODY=8BITMIME", "size=1009394"]),
            Some(1009394)
        );
        assert_eq!(size_param(&["SIZE=12x"]), None);
        assert_eq!(size_param(&["SIZE"]), None);
        assert_eq!(size_param(&["SMTPUTF8"]), None);
    }

    #[test]
    fn paths() {
        let p = path_arg("FROM:<a@example.test> SIZE=1234 BODY=8BITMIME", "FROM").unwrap();
        assert_eq!(
            (p.mailbox, p.params),
            ("a@example.test", vec!["SIZE=1234", "BODY=8BITMIME"])
        );
        let p = path_arg(
            "TO:<@relay1.test,@relay2.test:user@host.test> NOTIFY=FAILURE",
            "TO",
        )
        .unwrap();
        assert_eq!(
            (p.mailbox, p.route, p.params),
            (
                "user@host.test",
                vec!["relay1.test", "relay2.test"],
                vec!["NOTIFY=FAILURE"]
            )
        );
        assert_eq!(path_arg("from: <>", "FROM").unwrap().mailbox, "");
        assert_eq!(path_arg("TO:bare@host", "TO").unwrap().mailbox, "bare@host");
        assert_eq!(path_arg("TO:<x>", "FROM"), None);
        assert_eq!(bdat_args("1000 LAST"), Some((1000, true)));
        assert_eq!(bdat_args("42"), Some((42, false)));
        assert_eq!(bdat_args("x"), None);
        assert_eq!(
            auth_args("PLAIN AGFsaWNl"),
            Some(("PLAIN", Some("AGFsaWNl")))
        );
        let lines = [
            "250-mail.example.test".to_string(),
            "250-SIZE 20480000".to_string(),
            "250-auth=LOGIN PLAIN".to_string(),
            "250 STARTTLS".to_string(),
        ];
        assert_eq!(
            ehlo_keywords(lines.iter().map(String::as_str)),
            vec!["SIZE 20480000", "AUTH LOGIN PLAIN", "STARTTLS"]
        );
    }
}
