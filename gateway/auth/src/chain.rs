//! The authentication chain and the authorization chain: the core's `Authenticator` and
//! `Authorizer` built from backends in EMQX's order and semantics.

use std::sync::Arc;

use portico_core::auth::{Action, AuthResult, Authenticator, Authorizer, ClientInfo, Refusal};

use crate::{AuthnVerdict, AuthzVerdict};

/// One authentication backend of the chain.
pub trait AuthnBackend: Send + Sync + 'static {
    /// What the backend says about `client` with `password`.
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthnVerdict;
}

/// One authorization source.
pub trait AuthzSource: Send + Sync + 'static {
    /// What the source says about `client` doing `action` on `topic`.
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> AuthzVerdict;
}

/// Backends asked in order: the first allow or deny decides; when all ignore (or there are
/// none), `allow_anonymous` does. (EMQX: "anonymous" is the end of the chain.)
pub struct AuthnChain {
    backends: Vec<Arc<dyn AuthnBackend>>,
    allow_anonymous: bool,
}

impl AuthnChain {
    /// A chain of `backends`, ending in `allow_anonymous`.
    pub fn new(backends: Vec<Arc<dyn AuthnBackend>>, allow_anonymous: bool) -> AuthnChain {
        AuthnChain {
            backends,
            allow_anonymous,
        }
    }
}

impl Authenticator for AuthnChain {
    fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthResult {
        for backend in &self.backends {
            match backend.check(client, password) {
                AuthnVerdict::Allow { superuser } => return AuthResult::Allow { superuser },
                AuthnVerdict::Deny(refusal) => return AuthResult::Deny(refusal),
                AuthnVerdict::Ignore => {}
            }
        }
        if self.allow_anonymous {
            AuthResult::Allow { superuser: false }
        } else {
            AuthResult::Deny(Refusal::NotAuthorized)
        }
    }
}

/// Sources asked in order: the first allow or deny decides; none matching → `no_match`.
pub struct AuthzChain {
    sources: Vec<Arc<dyn AuthzSource>>,
    no_match_allow: bool,
}

impl AuthzChain {
    /// A chain of `sources`, ending in `no_match` (true = allow).
    pub fn new(sources: Vec<Arc<dyn AuthzSource>>, no_match_allow: bool) -> AuthzChain {
        AuthzChain {
            sources,
            no_match_allow,
        }
    }
}

impl Authorizer for AuthzChain {
    fn authorize(&self, client: &ClientInfo, action: Action, topic: &str) -> bool {
        if client.superuser {
            return true;
        }
        for source in &self.sources {
            match source.check(client, action, topic) {
                AuthzVerdict::Allow => return true,
                AuthzVerdict::Deny => return false,
                AuthzVerdict::Ignore => {}
            }
        }
        self.no_match_allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    struct Fixed(AuthnVerdict);
    impl AuthnBackend for Fixed {
        fn check(&self, _: &ClientInfo, _: Option<&[u8]>) -> AuthnVerdict {
            self.0
        }
    }

    struct Rule(&'static str, AuthzVerdict);
    impl AuthzSource for Rule {
        fn check(&self, _: &ClientInfo, _: Action, topic: &str) -> AuthzVerdict {
            if topic == self.0 { self.1 } else { AuthzVerdict::Ignore }
        }
    }

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: ByteString::from_static("c"),
            username: None,
            peer: "127.0.0.1:1".parse().expect("address"),
            protocol: "mqtt",
            superuser: false,
        }
    }

    #[test]
    fn first_decision_wins_and_all_ignore_falls_to_anonymous() {
        let ignore: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::Ignore));
        let deny: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::Deny(Refusal::BadCredentials)));
        let allow: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::Allow { superuser: true }));
        let chain = AuthnChain::new(vec![ignore.clone(), deny.clone(), allow.clone()], true);
        assert_eq!(
            chain.authenticate(&client(), None),
            AuthResult::Deny(Refusal::BadCredentials)
        );
        let chain = AuthnChain::new(vec![ignore.clone(), allow], false);
        assert_eq!(
            chain.authenticate(&client(), None),
            AuthResult::Allow { superuser: true }
        );
        let open = AuthnChain::new(vec![ignore.clone()], true);
        assert_eq!(
            open.authenticate(&client(), None),
            AuthResult::Allow { superuser: false }
        );
        let closed = AuthnChain::new(vec![ignore], false);
        assert_eq!(
            closed.authenticate(&client(), None),
            AuthResult::Deny(Refusal::NotAuthorized)
        );
    }

    #[test]
    fn sources_in_order_then_no_match_and_superusers_pass() {
        let chain = AuthzChain::new(
            vec![
                Arc::new(Rule("a", AuthzVerdict::Deny)),
                Arc::new(Rule("a", AuthzVerdict::Allow)),
                Arc::new(Rule("b", AuthzVerdict::Allow)),
            ],
            false,
        );
        let c = client();
        assert!(!chain.authorize(&c, Action::Publish, "a"), "the first source decides");
        assert!(chain.authorize(&c, Action::Publish, "b"));
        assert!(!chain.authorize(&c, Action::Publish, "z"), "no match = deny here");
        let superuser = ClientInfo { superuser: true, ..c };
        assert!(chain.authorize(&superuser, Action::Publish, "a"));
    }
}
