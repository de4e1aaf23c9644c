//! Authorization: whether an authenticated identity may use a route (`require:`).

use crate::config::{RequireConfig, RequireMode};

use super::Identity;

#[derive(Debug, Clone)]
pub struct Requirement {
    scopes: Vec<String>,
    roles: Vec<String>,
    claims: Vec<(String, String)>,
    mode: RequireMode,
}

impl Requirement {
    pub fn compile(cfg: &RequireConfig) -> Requirement {
        Requirement {
            scopes: cfg.scopes.clone(),
            roles: cfg.roles.clone(),
            claims: cfg.claims.clone(),
            mode: cfg.mode,
        }
    }

    /// `all`: every listed scope, role and claim; `any`: at least one of them.
    pub fn allows(&self, id: &Identity) -> bool {
        let mut checks = self
            .scopes
            .iter()
            .map(|s| id.scopes.contains(s))
            .chain(self.roles.iter().map(|r| id.roles.contains(r)))
            .chain(
                self.claims
                    .iter()
                    .map(|(k, v)| id.claim(k).is_some_and(|have| have == v)),
            );
        match self.mode {
            RequireMode::All => checks.all(|ok| ok),
            RequireMode::Any => checks.any(|ok| ok),
        }
    }

    /// The scopes to name in `WWW-Authenticate: ... scope="..."`.
    pub fn scope_list(&self) -> String {
        self.scopes.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(scopes: &[&str], roles: &[&str]) -> Identity {
        Identity {
            consumer: "c".into(),
            plan: None,
            scopes: crate::auth::Words::new(scopes.iter().copied()),
            roles: crate::auth::Words::new(roles.iter().copied()),
            claims: Vec::new(),
        }
    }

    #[test]
    fn all_and_any() {
        let all = Requirement::compile(&RequireConfig {
            scopes: vec!["a".into(), "b".into()],
            roles: Vec::new(),
            claims: vec![],
            mode: RequireMode::All,
        });
        assert!(all.allows(&id(&["a", "b", "c"], &[])));
        assert!(!all.allows(&id(&["a"], &[])));
        let any = Requirement::compile(&RequireConfig {
            scopes: vec!["a".into()],
            roles: vec!["admin".into()],
            claims: vec![("tenant".into(), "acme".into())],
            mode: RequireMode::Any,
        });
        assert!(any.allows(&id(&[], &["admin"])));
        assert!(!any.allows(&id(&["x"], &["user"])));
    }
}
