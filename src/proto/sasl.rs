//! SASL exchanges (RFC 4422) as SMTP AUTH, POP3 AUTH and IMAP AUTHENTICATE carry them: base64
//! challenges and responses, decoded into the user name and secret for the common mechanisms.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{ntlm, AuthAttempt};
use crate::capture::Timestamp;
use crate::secret::Secret;

/// One SASL exchange in progress.
#[derive(Debug, Clone)]
pub struct Sasl {
    mechanism: String,
    /// Decoded server challenges, in order.
    challenges: Vec<Vec<u8>>,
    /// Decoded client responses, in order (an initial response first).
    responses: Vec<Vec<u8>>,
    /// Responses that were not valid base64.
    pub malformed: usize,
    pub cancelled: bool,
}

impl Sasl {
    /// Starts an exchange; `initial` is the initial response of the AUTH command, if any
    /// (`=` stands for an empty one).
    pub fn new(mechanism: &str, initial: Option<&str>) -> Sasl {
        let mut sasl = Sasl {
            mechanism: mechanism.to_ascii_uppercase(),
            challenges: Vec::new(),
            responses: Vec::new(),
            malformed: 0,
            cancelled: false,
        };
        if let Some(initial) = initial {
            sasl.response(initial);
        }
        sasl
    }

    pub fn mechanism(&self) -> &str {
        &self.mechanism
    }

    pub fn challenge(&mut self, text: &str) {
        self.challenges.push(
            STANDARD
                .decode(text.trim())
                .unwrap_or_else(|_| text.as_bytes().to_vec()),
        );
    }

    pub fn response(&mut self, text: &str) {
        let text = text.trim();
        if text == "*" {
            self.cancelled = true;
            return;
        }
        if text == "=" {
            self.responses.push(Vec::new());
            return;
        }
        match STANDARD.decode(text) {
            Ok(bytes) => self.responses.push(bytes),
            Err(_) => {
                self.malformed += 1;
                self.responses.push(text.as_bytes().to_vec());
            }
        }
    }

    /// Takes the client's next response and returns it as the dialogue shows it (decoded, with
    /// secrets masked).
    pub fn respond(&mut self, text: &str) -> String {
        self.response(text);
        if self.cancelled {
            return "cancelled".to_string();
        }
        self.decoded_step(self.responses.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// The decoded challenges and responses, for display: `Username:`, `alice`, ... Secrets are
    /// masked: the password or token is never part of this.
    pub fn decoded_step(&self, response_index: usize) -> Option<String> {
        let bytes = self.responses.get(response_index)?;
        Some(match (self.mechanism.as_str(), response_index) {
            ("PLAIN", _) => {
                let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
                match parts.as_slice() {
                    [[], user, _] => {
                        format!("user {} password ****", text(user))
                    }
                    [authz, user, _] => {
                        format!("user {} as {} password ****", text(user), text(authz))
                    }
                    _ => "(not a PLAIN response)".to_string(),
                }
            }
            ("LOGIN", 0) => text(bytes),
            ("LOGIN", _) => "****".to_string(),
            ("NTLM", _) => match ntlm::authenticate(bytes) {
                Some(a) if a.domain.is_empty() => format!("NTLM response for {}", a.user),
                Some(a) => format!("NTLM response for {}\\{}", a.domain, a.user),
                None => "NTLM negotiation".to_string(),
            },
            _ => "(credentials)".to_string(),
        })
    }

    /// What the exchange revealed.
    pub fn attempt(&self, success: Option<bool>, ts: Timestamp) -> AuthAttempt {
        let (username, secret) = self.credentials();
        AuthAttempt {
            mechanism: self.mechanism.clone(),
            username,
            secret: secret.map(Secret::new),
            success: if self.cancelled { Some(false) } else { success },
            ts,
        }
    }

    fn credentials(&self) -> (Option<String>, Option<String>) {
        let response = |i: usize| self.responses.get(i);
        match self.mechanism.as_str() {
            // RFC 4616: [authzid] NUL authcid NUL passwd
            "PLAIN" => {
                let parts: Vec<&[u8]> =
                    response(0).map_or_else(Vec::new, |r| r.split(|&b| b == 0).collect());
                match parts.as_slice() {
                    [_authzid, authcid, passwd] => (Some(text(authcid)), Some(text(passwd))),
                    _ => (None, None),
                }
            }
            // draft-murchison-sasl-login: user name, then password, each after a prompt.
            "LOGIN" => (response(0).map(|r| text(r)), response(1).map(|r| text(r))),
            // RFC 2195: "user digest"; the secret is what cracking tools need, challenge and digest.
            "CRAM-MD5" => match response(0).map(|r| text(r)) {
                Some(r) => match r.rsplit_once(' ') {
                    Some((user, digest)) => {
                        let challenge =
                            self.challenges.first().map(|c| text(c)).unwrap_or_default();
                        (
                            Some(user.to_string()),
                            Some(format!("{challenge} {digest}")),
                        )
                    }
                    None => (None, None),
                },
                None => (None, None),
            },
            // MS-NLMP: the user and the challenge-response as crackers read it.
            "NTLM" => {
                let challenge = self
                    .challenges
                    .iter()
                    .find_map(|c| ntlm::server_challenge(c));
                let response = self.responses.iter().find_map(|r| ntlm::authenticate(r));
                match response {
                    Some(r) => {
                        let line = challenge.and_then(|c| r.crack_line(&c));
                        (Some(r.user), line)
                    }
                    None => (None, None),
                }
            }
            // Google's XOAUTH2: "user=" U ^A "auth=Bearer " T ^A ^A
            "XOAUTH2" => match response(0) {
                Some(r) => kv_credentials(&text(r), "user"),
                None => (None, None),
            },
            // RFC 7628: gs2 header "n,a=U," then ^A-separated pairs with "auth=Bearer T".
            "OAUTHBEARER" => match response(0).map(|r| text(r)) {
                Some(r) => {
                    let user = r
                        .split(',')
                        .find_map(|p| p.strip_prefix("a="))
                        .map(|u| u.replace("=2C", ",").replace("=3D", "="));
                    (user, kv_credentials(&r, "user").1)
                }
                None => (None, None),
            },
            _ => (None, None),
        }
    }
}

fn kv_credentials(text: &str, user_key: &str) -> (Option<String>, Option<String>) {
    let mut user = None;
    let mut token = None;
    for pair in text.split('\u{1}') {
        if let Some((key, value)) = pair.split_once('=') {
            if key == user_key {
                user = Some(value.to_string());
            } else if key == "auth" {
                token = Some(value.strip_prefix("Bearer ").unwrap_or(value).to_string());
            }
        }
    }
    (user, token)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn known_answers() {
        let plain = Sasl::new("plain", Some(&b64(b"\0alice\0alice-Secret-1")));
        let a = plain.attempt(Some(true), Timestamp(0));
        assert_eq!(
            (a.mechanism.as_str(), a.username.as_deref()),
            ("PLAIN", Some("alice"))
        );
        assert_eq!(
            a.secret.as_ref().map(Secret::expose),
            Some("alice-Secret-1")
        );

        let mut login = Sasl::new("LOGIN", None);
        login.challenge("VXNlcm5hbWU6");
        login.response(&b64(b"bob"));
        login.challenge("UGFzc3dvcmQ6");
        login.response(&b64(b"bob-Secret-2"));
        let a = login.attempt(Some(false), Timestamp(0));
        assert_eq!(
            (a.username.as_deref(), a.secret.as_ref().map(Secret::expose)),
            (Some("bob"), Some("bob-Secret-2"))
        );
        assert_eq!(login.decoded_step(1).as_deref(), Some("****"));

        // RFC 2195's example.
        let mut cram = Sasl::new("CRAM-MD5", None);
        cram.challenge("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+");
        cram.response("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
        let a = cram.attempt(None, Timestamp(0));
        assert_eq!(a.username.as_deref(), Some("tim"));
        assert_eq!(
            a.secret.as_ref().map(Secret::expose),
            Some("<1896.697170952@postoffice.reston.mci.net> b913a602c7eda7a495b4e6e7334d3890")
        );

        let xoauth = Sasl::new(
            "XOAUTH2",
            Some(&b64(
                b"user=carol@example.test\x01auth=Bearer ya29.tok\x01\x01",
            )),
        );
        let a = xoauth.attempt(Some(true), Timestamp(0));
        assert_eq!(
            (a.username.as_deref(), a.secret.as_ref().map(Secret::expose)),
            (Some("carol@example.test"), Some("ya29.tok"))
        );

        let bearer = Sasl::new(
            "OAUTHBEARER",
            Some(&b64(
                b"n,a=dave@example.test,\x01host=mail\x01auth=Bearer abc\x01\x01",
            )),
        );
        let a = bearer.attempt(Some(true), Timestamp(0));
        assert_eq!(
            (a.username.as_deref(), a.secret.as_ref().map(Secret::expose)),
            (Some("dave@example.test"), Some("abc"))
        );

        let mut bad = Sasl::new("PLAIN", None);
        bad.response("not base64!!");
        assert_eq!(bad.malformed, 1);
        assert_eq!(bad.attempt(None, Timestamp(0)).username, None);

        let mut cancelled = Sasl::new("LOGIN", None);
        cancelled.response("*");
        assert_eq!(cancelled.attempt(None, Timestamp(0)).success, Some(false));
    }
}
