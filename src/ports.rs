//! Which TCP ports carry mail, and as which service. Shared by the decoder (to skip everything
//! else early), the flow table (to tell the server from the client) and the dissectors.

use std::fmt;
use std::str::FromStr;

/// A mail service: the protocol and whether TLS starts at once (implicit TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Smtp,
    Smtps,
    Pop3,
    Pop3s,
    Imap,
    Imaps,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Smtps => "smtps",
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "smtp" => Service::Smtp,
            "smtps" => Service::Smtps,
            "pop3" | "pop" => Service::Pop3,
            "pop3s" | "pops" => Service::Pop3s,
            "imap" => Service::Imap,
            "imaps" => Service::Imaps,
            other => {
                return Err(format!(
                    "unknown protocol {other:?} (smtp, smtps, pop3, pop3s, imap, imaps)"
                ))
            }
        })
    }
}

/// The well-known mail ports (RFC 5321/6409/8314, RFC 1939/8314, RFC 9051/8314; 2525 is the
/// common alternative submission port, 585 the old IMAP-over-SSL port).
const DEFAULT_PORTS: [(u16, Service); 9] = [
    (25, Service::Smtp),
    (465, Service::Smtps),
    (587, Service::Smtp),
    (2525, Service::Smtp),
    (110, Service::Pop3),
    (995, Service::Pop3s),
    (143, Service::Imap),
    (993, Service::Imaps),
    (585, Service::Imaps),
];

/// A port-to-service table with O(1) lookup: the decoder asks it for every TCP packet.
#[derive(Clone)]
pub struct MailPorts {
    by_port: Box<[Option<Service>; 65536]>,
}

impl Default for MailPorts {
    fn default() -> Self {
        let mut ports = MailPorts {
            by_port: Box::new([None; 65536]),
        };
        for (port, service) in DEFAULT_PORTS {
            ports.add(port, service);
        }
        ports
    }
}

impl MailPorts {
    // The table has one slot per u16 value, so the lookups below always find their slot.
    pub fn add(&mut self, port: u16, service: Service) {
        if let Some(slot) = self.by_port.get_mut(usize::from(port)) {
            *slot = Some(service);
        }
    }

    pub fn service(&self, port: u16) -> Option<Service> {
        self.by_port.get(usize::from(port)).copied().flatten()
    }

    pub fn is_mail(&self, port: u16) -> bool {
        self.service(port).is_some()
    }

    /// The ports in use, in ascending order (for building a BPF filter).
    pub fn ports(&self) -> Vec<u16> {
        (0..=u16::MAX).filter(|&p| self.is_mail(p)).collect()
    }

    /// A libpcap filter that passes the mail ports and IP fragments (whose later pieces carry no
    /// TCP header, so a port filter alone would drop them before reassembly).
    pub fn bpf_filter(&self) -> String {
        let ports: Vec<String> = self.ports().iter().map(u16::to_string).collect();
        format!(
            "(tcp port ({})) or (ip[6:2] & 0x1fff != 0) or (ip6[6] == 44)",
            ports.join(" or ")
        )
    }
}

/// A `--port PROTO=N` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAssignment {
    pub service: Service,
    pub port: u16,
}

impl FromStr for PortAssignment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, port) = s
            .split_once('=')
            .ok_or_else(|| format!("expected PROTO=PORT, like smtp=10025, got {s:?}"))?;
        let service = proto.parse()?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("invalid port {port:?} (1 to 65535)"))?;
        Ok(PortAssignment { service, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_additions() {
        let mut ports = MailPorts::default();
        assert_eq!(ports.service(25), Some(Service::Smtp));
        assert_eq!(ports.service(993), Some(Service::Imaps));
        assert_eq!(ports.service(0), None);
        assert_eq!(ports.service(80), None);
        let extra: PortAssignment = "pop3s=10995".parse().unwrap();
        ports.add(extra.port, extra.service);
        assert_eq!(ports.service(10995), Some(Service::Pop3s));
        assert!("smtp=0".parse::<PortAssignment>().is_err());
        assert!("ftp=21".parse::<PortAssignment>().is_err());
        assert!("smtp".parse::<PortAssignment>().is_err());
    }
}
