//! One credentials list across the capture: protocol, server, user, mechanism, result, and the
//! secret, with challenge-response mechanisms also in the form password crackers read.

use base64::Engine;

use crate::export::time;
use crate::proto::AuthAttempt;
use crate::sanitize;
use crate::session::model::{Session, TlsMode};

pub const CSV_HEADER: &str =
    "session,time,protocol,client,server,tls,mechanism,username,secret,result,crack\n";

/// A challenge-response in the form password crackers read. The session layer keeps these
/// secrets as `challenge digest`.
/// - CRAM-MD5, hashcat mode 16400 and John: `$cram_md5$base64(challenge)$base64(user digest)`;
/// - APOP (MD5 of the greeting's timestamp and the password), hashcat mode 20:
///   `digest:timestamp`;
/// - NTLM: the secret is already NetNTLMv2 (hashcat 5600) or NetNTLMv1 (hashcat 5500).
pub fn crack_line(attempt: &AuthAttempt) -> Option<String> {
    let secret = attempt.secret.as_ref()?.expose();
    let mechanism = attempt.mechanism.to_ascii_uppercase();
    if mechanism == "NTLM" {
        // The secret already is the NetNTLMv1/v2 line (see proto::ntlm).
        return Some(secret.to_string());
    }
    let (challenge, digest) = secret.rsplit_once(' ')?;
    match mechanism.as_str() {
        "CRAM-MD5" => {
            let user = attempt.username.as_deref()?;
            let b64 = base64::engine::general_purpose::STANDARD;
            Some(format!(
                "$cram_md5${}${}",
                b64.encode(challenge),
                b64.encode(format!("{user} {digest}"))
            ))
        }
        "APOP" => Some(format!("{digest}:{challenge}")),
        _ => None,
    }
}

/// One CSV field (RFC 4180): quoted when it must be, with a leading `'` when a spreadsheet
/// would take it for a formula, and terminal controls shown as escapes (captured text is
/// hostile; `--json` keeps the exact value).
fn field(text: &str) -> String {
    let text = if sanitize::has_controls(text) {
        sanitize::line(text.as_bytes())
    } else {
        text.to_string()
    };
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV row of one authentication, written as it comes. The TLS column says what protected
/// that attempt: an attempt seen inside TLS was decrypted, and one before STARTTLS was in clear.
pub fn csv_row(session: &Session, attempt: &AuthAttempt) -> String {
    let tls = match session.tls.mode {
        TlsMode::None => "none".to_string(),
        mode => format!("{} decrypted", mode.name()),
    };
    let result = match attempt.success {
        Some(true) => "accepted",
        Some(false) => "refused",
        None => "unknown",
    };
    let fields = [
        session.id.to_string(),
        time::utc(attempt.ts),
        session.protocol.name().to_string(),
        session.client.to_string(),
        session.server.to_string(),
        tls,
        attempt.mechanism.clone(),
        attempt.username.clone().unwrap_or_default(),
        attempt
            .secret
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default(),
        result.to_string(),
        crack_line(attempt).unwrap_or_default(),
    ];
    let row: Vec<String> = fields.iter().map(|f| field(f)).collect();
    row.join(",") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_could_break_a_csv_or_a_spreadsheet() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("mal\x1b[2Jlory"), "mal\\x1b[2Jlory");
    }
}
