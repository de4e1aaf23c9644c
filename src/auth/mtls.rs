//! `type: mtls`: the client certificate the listener verified (against its `client_ca`) names
//! the consumer. The certificate comes from the TLS handshake of the connection, so no header
//! or other request content can claim one.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Identity, Words};
use crate::config::MtlsSubject;
use crate::tls::identity::ClientIdentity;

/// The accepted certificate names and the identity each stands for, built once per snapshot.
#[derive(Debug)]
pub struct Subjects {
    by_name: HashMap<String, Arc<Identity>>,
}

impl Subjects {
    pub fn new(subjects: &[MtlsSubject]) -> Subjects {
        let by_name = subjects
            .iter()
            .map(|s| {
                let identity = Identity {
                    consumer: s.consumer.clone(),
                    plan: s.plan.clone(),
                    scopes: Words::new(s.scopes.iter().map(String::as_str)),
                    roles: Words::new(s.roles.iter().map(String::as_str)),
                    claims: Vec::new(),
                };
                (s.name.clone(), Arc::new(identity))
            })
            .collect();
        Subjects { by_name }
    }

    /// The identity of the first of the certificate's names (common name, then alternative
    /// names in order) that is listed.
    pub fn identify(&self, certificate: Option<&ClientIdentity>) -> Result<Arc<Identity>, &'static str> {
        let certificate = certificate.ok_or("missing client certificate")?;
        certificate
            .names()
            .find_map(|n| self.by_name.get(n))
            .cloned()
            .ok_or("client certificate not accepted")
    }
}
