//! One line on what a command or a reply means: the teaching mode (`e`). Sources: RFC 5321
//! (SMTP), 3207 (STARTTLS), 4954 (AUTH), 3030 (BDAT), 3463 (enhanced codes), 1939 and 2449
//! (POP3), 9051 (IMAP).

use crate::session::model::Protocol;

pub fn command(protocol: Protocol, verb: &str) -> Option<&'static str> {
    let verb = verb.to_ascii_uppercase();
    let text = match (protocol, verb.as_str()) {
        (Protocol::Smtp, "EHLO") => "client introduces itself and asks for the server's extensions",
        (Protocol::Smtp, "HELO") => "client introduces itself (old form, no extensions)",
        (Protocol::Smtp, "MAIL") => "starts a message: the envelope sender (bounces go there)",
        (Protocol::Smtp, "RCPT") => "adds an envelope recipient; the server may refuse each one",
        (Protocol::Smtp, "DATA") => "the message follows, ended by a line with a single dot",
        (Protocol::Smtp, "BDAT") => "a chunk of the message of exactly this many bytes",
        (Protocol::Smtp, "RSET") => "forget the transaction in progress",
        (Protocol::Smtp, "VRFY") => "asks whether a mailbox exists (often used to probe users)",
        (Protocol::Smtp, "EXPN") => "asks to expand a mailing list",
        (Protocol::Smtp, "NOOP") => "does nothing; keeps the connection alive",
        (Protocol::Smtp, "QUIT") => "ends the session",
        (Protocol::Smtp, "STARTTLS") => "switch this connection to TLS from the next byte on",
        (Protocol::Smtp, "AUTH") => "authenticate with a SASL mechanism (base64 exchange)",
        (Protocol::Smtp, "HELP") => "asks for help text",
        (Protocol::Pop3, "USER") => "names the mailbox to log in to",
        (Protocol::Pop3, "PASS") => "the password, in the clear unless TLS protects it",
        (Protocol::Pop3, "APOP") => "login with an MD5 digest of the greeting's timestamp",
        (Protocol::Pop3, "STAT") => "number of messages and their total size",
        (Protocol::Pop3, "LIST") => "the size of each message",
        (Protocol::Pop3, "UIDL") => "the unique id of each message",
        (Protocol::Pop3, "RETR") => "download a whole message",
        (Protocol::Pop3, "TOP") => "download the headers and the first lines of a message",
        (Protocol::Pop3, "DELE") => "mark a message for deletion at QUIT",
        (Protocol::Pop3, "RSET") => "unmark the messages marked for deletion",
        (Protocol::Pop3, "CAPA") => "asks for the server's capabilities",
        (Protocol::Pop3, "STLS") => "switch this connection to TLS",
        (Protocol::Pop3, "QUIT") => "ends the session; marked messages are deleted",
        (Protocol::Imap, "LOGIN") => "log in with a user name and password",
        (Protocol::Imap, "AUTHENTICATE") => "authenticate with a SASL mechanism",
        (Protocol::Imap, "CAPABILITY") => "asks what the server supports",
        (Protocol::Imap, "SELECT") => "opens a mailbox read-write; the server reports its state",
        (Protocol::Imap, "EXAMINE") => "opens a mailbox read-only",
        (Protocol::Imap, "LIST") => "lists mailboxes",
        (Protocol::Imap, "STATUS") => "asks about a mailbox without opening it",
        (Protocol::Imap, "FETCH" | "UID FETCH") => {
            "asks for data of messages (flags, headers, bodies)"
        }
        (Protocol::Imap, "STORE" | "UID STORE") => "changes the flags of messages",
        (Protocol::Imap, "SEARCH" | "UID SEARCH") => "finds messages matching criteria",
        (Protocol::Imap, "APPEND") => "uploads a message into a mailbox",
        (Protocol::Imap, "IDLE") => "wait for the server to push changes, until DONE",
        (Protocol::Imap, "EXPUNGE") => "removes the messages flagged \\Deleted",
        (Protocol::Imap, "STARTTLS") => "switch this connection to TLS",
        (Protocol::Imap, "COMPRESS") => "from here on both directions are deflate-compressed",
        (Protocol::Imap, "LOGOUT") => "ends the session",
        (_, "NOOP") => "does nothing; keeps the connection alive",
        _ => return None,
    };
    Some(text)
}

pub fn reply(protocol: Protocol, code: &str) -> Option<&'static str> {
    let text = match (protocol, code) {
        (Protocol::Smtp, "220") => "service ready (or: go ahead with TLS)",
        (Protocol::Smtp, "221") => "closing the connection",
        (Protocol::Smtp, "235") => "authentication succeeded",
        (Protocol::Smtp, "250") => "requested action done",
        (Protocol::Smtp, "251" | "252") => "will forward / cannot verify but will try",
        (Protocol::Smtp, "334") => "SASL challenge: the client must answer",
        (Protocol::Smtp, "354") => "send the message, end with <CRLF>.<CRLF>",
        (Protocol::Smtp, "421") => "service closing: try again later",
        (Protocol::Smtp, "450" | "451" | "452") => {
            "temporary failure: the client should retry later"
        }
        (Protocol::Smtp, "454") => "TLS or authentication temporarily unavailable",
        (Protocol::Smtp, "500" | "501") => "syntax error in the command or its arguments",
        (Protocol::Smtp, "502" | "504") => "command or parameter not implemented",
        (Protocol::Smtp, "503") => "bad sequence of commands",
        (Protocol::Smtp, "530") => "authentication required (or STARTTLS first)",
        (Protocol::Smtp, "534" | "535") => "authentication failed",
        (Protocol::Smtp, "550") => "refused: mailbox unavailable or policy",
        (Protocol::Smtp, "551" | "553") => "refused: address not accepted here",
        (Protocol::Smtp, "552") => "refused: over a size or storage limit",
        (Protocol::Smtp, "554") => "transaction failed (often a policy rejection)",
        (Protocol::Pop3, "+OK") => "success",
        (Protocol::Pop3, "-ERR") => "failure",
        (Protocol::Imap, "OK") => "the command succeeded",
        (Protocol::Imap, "NO") => "the command failed",
        (Protocol::Imap, "BAD") => "the command was not understood",
        (Protocol::Imap, "*") => "untagged data from the server",
        (Protocol::Imap, "+") => "go ahead: the server waits for more from the client",
        _ => return None,
    };
    Some(text)
}

/// The class and subject of an RFC 3463 enhanced status code (`5.7.1`).
pub fn enhanced(code: &str) -> Option<String> {
    let mut parts = code.split('.');
    let class = match parts.next()? {
        "2" => "success",
        "4" => "temporary failure",
        "5" => "permanent failure",
        _ => return None,
    };
    let subject = match parts.next()? {
        "0" => "other",
        "1" => "addressing",
        "2" => "mailbox",
        "3" => "mail system",
        "4" => "network and routing",
        "5" => "mail delivery protocol",
        "6" => "message content",
        "7" => "security or policy",
        _ => return None,
    };
    Some(format!("{class}, {subject}"))
}
