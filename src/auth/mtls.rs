//! `type: mtls`: the client certificate a listener verified (against its `client_ca`) names
//! the consumer. The certificate comes from the TLS handshake of the connection, so no header
//! or other request content can claim one.

use std::sync::Arc;

use super::{Identity, Words};
use crate::config::MtlsConfig;
use crate::tls::identity::{ClientIdentity, NameKind};

/// The accepted certificate names and the identity each stands for, built once per snapshot.
#[derive(Debug)]
pub struct Subjects {
    /// In configuration order: the first that the certificate names wins.
    subjects: Vec<(NameKind, String, Arc<Identity>)>,
    /// The listeners whose verified certificates count (empty: every listener's).
    listeners: Vec<String>,
}

impl Subjects {
    pub fn new(cfg: &MtlsConfig) -> Subjects {
        let subjects = cfg
            .subjects
            .iter()
            .map(|s| {
                let identity = Identity {
                    consumer: s.consumer.clone(),
                    plan: s.plan.clone(),
                    scopes: Words::new(s.scopes.iter().map(String::as_str)),
                    roles: Words::new(s.roles.iter().map(String::as_str)),
                    claims: Vec::new(),
                };
                let (kind, name) = NameKind::split(&s.name);
                (kind, name.to_string(), Arc::new(identity))
            })
            .collect();
        Subjects {
            subjects,
            listeners: cfg.listeners.clone(),
        }
    }

    /// The identity of the first listed subject the certificate names.
    pub fn identify(&self, certificate: Option<&ClientIdentity>) -> Result<Arc<Identity>, &'static str> {
        let certificate = certificate.ok_or("missing client certificate")?;
        if !self.listeners.is_empty() && !self.listeners.contains(&certificate.listener) {
            return Err("client certificate not accepted");
        }
        self.subjects
            .iter()
            .find(|(kind, name, _)| certificate.names(*kind).any(|n| n == name))
            .map(|(_, _, id)| Arc::clone(id))
            .ok_or("client certificate not accepted")
    }
}
