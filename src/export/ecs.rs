//! `--ecs`: Elastic Common Schema fields beside the records' own, so that the NDJSON can be
//! shipped straight into Elasticsearch or OpenSearch (ECS 8.11: `@timestamp`, `event.*`,
//! `source.*`, `destination.*`, `network.*`, `email.*`, `tls.*`, `user.name`, `rule.name`).
//! The records' own fields stay as the output contract has them; where both name the same
//! object (`tls` of a session record), the ECS keys are added into it.

use serde_json::{json, Map, Value};

use crate::capture::Timestamp;
use crate::hex;
use crate::mime;
use crate::proto::Exchange;
use crate::session::model::{Finding, Message, Session, Severity, TlsMode};

pub const ECS_VERSION: &str = "8.11.0";

/// `2026-11-26T21:30:01.123456Z`.
fn timestamp(ts: Timestamp) -> String {
    super::time::datetime(ts)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// What every record of a session carries: time, event, the two ends, the network.
fn base(
    session: &Session,
    ts: Timestamp,
    dataset: &str,
    kind: &str,
    category: &[&str],
) -> Map<String, Value> {
    let mut ecs = Map::new();
    ecs.insert("@timestamp".into(), json!(timestamp(ts)));
    ecs.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    ecs.insert(
        "event".into(),
        json!({
            "kind": kind,
            "category": category,
            "module": "mailscope",
            "dataset": format!("mailscope.{dataset}"),
        }),
    );
    ecs.insert(
        "source".into(),
        json!({ "ip": session.client.ip().to_string(), "port": session.client.port() }),
    );
    ecs.insert(
        "destination".into(),
        json!({ "ip": session.server.ip().to_string(), "port": session.server.port() }),
    );
    ecs.insert(
        "network".into(),
        json!({ "transport": "tcp", "protocol": session.protocol.name() }),
    );
    if let Some(user) = session.user() {
        ecs.insert("user".into(), json!({ "name": user }));
    }
    ecs
}

pub fn session(session: &Session) -> Map<String, Value> {
    let mut ecs = base(
        session,
        session.start,
        "session",
        "event",
        &["network", "email"],
    );
    let event = ecs.get_mut("event").and_then(Value::as_object_mut);
    if let Some(event) = event {
        event.insert("type".into(), json!(["connection"]));
        event.insert("start".into(), json!(timestamp(session.start)));
        event.insert("end".into(), json!(timestamp(session.end)));
        event.insert("duration".into(), json!(session.end.since(session.start)));
    }
    ecs.insert("tls".into(), Value::Object(tls(session)));
    ecs
}

/// ECS keys added into the session record's own `tls` object.
fn tls(session: &Session) -> Map<String, Value> {
    let info = session.tls.info();
    let mut tls = Map::new();
    if session.tls.mode == TlsMode::None {
        return tls;
    }
    if let Some(version) = info.version.as_deref() {
        let (protocol, number) =
            version.split_at(version.find(|c: char| c.is_ascii_digit()).unwrap_or(0));
        tls.insert(
            "version_protocol".into(),
            json!(protocol.to_ascii_lowercase()),
        );
        tls.insert("version_number".into(), json!(number));
    }
    tls.insert("established".into(), json!(info.version.is_some()));
    tls.insert("resumed".into(), json!(info.resumed));
    if let Some(sni) = info.sni.as_deref() {
        tls.insert("client".into(), json!({ "server_name": sni }));
    }
    if let Some(cert) = &info.certificate {
        let x509 = json!({
            "subject": { "distinguished_name": cert.subject },
            "issuer": { "distinguished_name": cert.issuer },
            "not_before": iso_date(&cert.not_before),
            "not_after": iso_date(&cert.not_after),
        });
        tls.insert("server".into(), json!({ "x509": x509 }));
    }
    tls
}

pub fn exchange(session: &Session, exchange: &Exchange, ts: Timestamp) -> Map<String, Value> {
    let mut ecs = base(session, ts, "exchange", "event", &["email", "network"]);
    let reply = exchange.reply.as_ref();
    if let (Some(event), Some(reply)) = (ecs.get_mut("event").and_then(Value::as_object_mut), reply)
    {
        let failed = crate::analysis::refused(session.protocol, reply);
        event.insert(
            "outcome".into(),
            json!(if failed { "failure" } else { "success" }),
        );
        event.insert(
            "action".into(),
            json!(exchange
                .command
                .as_ref()
                .map(|c| c.verb.to_ascii_lowercase())),
        );
    }
    ecs
}

pub fn message(session: &Session, message: &Message) -> Map<String, Value> {
    let mut ecs = base(session, message.captured.ts, "message", "event", &["email"]);
    let (c, v) = (&message.captured, &message.view);
    let direction = match c.source {
        "smtp" | "imap-append" => "outbound",
        _ => "inbound",
    };
    let mut email = json!({
        "direction": direction,
        "subject": v.subject,
        "message_id": v.message_id,
        "from": { "address": addresses(&v.from) },
        "to": { "address": addresses(&v.to) },
        "cc": { "address": addresses(&v.cc) },
        "reply_to": { "address": addresses(&v.reply_to) },
        "origination_timestamp": v.date,
        "attachments": v.attachments.iter().map(|a| json!({
            "file": {
                "name": a.filename,
                "mime_type": a.content_type,
                "size": a.size,
                "hash": { "sha256": hex::encode(&a.sha256) },
            }
        })).collect::<Vec<_>>(),
    });
    if let Some(email) = email.as_object_mut() {
        if let Some(sender) = c.mail_from.as_deref() {
            email.insert("sender".into(), json!({ "address": sender }));
        }
    }
    ecs.insert("email".into(), email);
    ecs.insert(
        "file".into(),
        json!({ "size": c.size, "hash": { "sha256": hex::encode(&c.sha256) } }),
    );
    ecs
}

/// x509-parser's `Nov 22 07:34:12 2026 +00:00` as ISO 8601, which Elasticsearch maps as a date.
fn iso_date(text: &str) -> Option<String> {
    let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    chrono::DateTime::parse_from_str(&squeezed, "%b %d %H:%M:%S %Y %:z")
        .ok()
        .map(|t| t.to_rfc3339())
}

fn addresses(shown: &[String]) -> Vec<&str> {
    shown.iter().map(|a| mime::bare_address(a)).collect()
}

pub fn finding(session: &Session, finding: &Finding) -> Map<String, Value> {
    let mut ecs = base(
        session,
        finding.ts,
        "finding",
        "alert",
        &["email", "network"],
    );
    let severity = match finding.severity() {
        Severity::Info => 21,
        Severity::Warning => 47,
        Severity::Alert => 73,
    };
    if let Some(event) = ecs.get_mut("event").and_then(Value::as_object_mut) {
        event.insert("severity".into(), json!(severity));
        event.insert("reason".into(), json!(finding.kind.why()));
    }
    ecs.insert("rule".into(), json!({ "name": finding.kind.name() }));
    ecs.insert("message".into(), json!(finding.detail));
    ecs
}
