//! A client certificate's identity: the names it was issued for, read once per connection
//! after the TLS handshake has verified it against the client CA.

use std::sync::Arc;

use x509_parser::extensions::GeneralName;

/// The names a verified client certificate carries: subject common names first, then DNS,
/// URI and e-mail subject alternative names, in certificate order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    names: Arc<[String]>,
}

impl PeerCertificate {
    /// The names of a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names: Vec<String> = certificate
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
        if let Ok(Some(alternatives)) = certificate.subject_alternative_name() {
            names.extend(
                alternatives
                    .value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(name)
                        | GeneralName::URI(name)
                        | GeneralName::RFC822Name(name) => Some((*name).to_owned()),
                        _ => None,
                    }),
            );
        }
        Some(Self {
            names: names.into(),
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}
