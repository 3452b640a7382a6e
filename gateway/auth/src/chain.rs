//! The authentication chain and the authorization chain: the core's `Authenticator` and
//! `Authorizer` built from backends in EMQX's order and semantics.
//!
//! A backend answers now ([`Check::Now`]) or later ([`Check::Later`]: a future, for a web
//! service, a database or a slow password hash). The chain runs on the caller's thread until a
//! backend answers later; the rest of the chain then continues on a task of its own, and the
//! caller gets a [`Verdict::Pending`] that the task resolves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use portico_core::auth::{Action, AuthResult, Authenticator, Authorizer, ClientInfo, Refusal, Verdict, pending_pair};
use tokio::runtime::Handle;

use crate::{AuthnVerdict, AuthzVerdict};

/// A boxed future a backend answers with.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A backend's answer: now, or from a future.
pub enum Check<T> {
    /// Known now.
    Now(T),
    /// Known when the future completes. It must finish in bounded time: backends apply their
    /// own timeouts.
    Later(BoxFuture<T>),
}

impl<T> std::fmt::Debug for Check<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::Now(_) => "Now",
            Check::Later(_) => "Later",
        })
    }
}

impl<T> From<T> for Check<T> {
    fn from(value: T) -> Self {
        Check::Now(value)
    }
}

impl<T: Send + 'static> Check<T> {
    /// Waits for the answer (in a task).
    pub async fn resolve(self) -> T {
        match self {
            Check::Now(value) => value,
            Check::Later(future) => future.await,
        }
    }
}

/// One authentication backend of the chain.
pub trait AuthnBackend: Send + Sync + 'static {
    /// What the backend says about `client` with `password`.
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict>;
}

/// One authorization source.
pub trait AuthzSource: Send + Sync + 'static {
    /// What the source says about `client` doing `action` on `topic`.
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Check<AuthzVerdict>;
}

/// Runs `task` on the caller's runtime, or on the one the chain was built in. Without either
/// the task is dropped, which resolves its verdict as abandoned (a refusal), never a hang.
fn spawn(fallback: &Option<Handle>, task: impl Future<Output = ()> + Send + 'static) {
    match Handle::try_current().ok().or_else(|| fallback.clone()) {
        Some(handle) => drop(handle.spawn(task)),
        None => tracing::error!("no async runtime to run an authentication or authorization check on"),
    }
}

/// Backends asked in order: the first allow or deny decides; when all ignore (or there are
/// none), `allow_anonymous` does. (EMQX: "anonymous" is the end of the chain.)
pub struct AuthnChain {
    backends: Arc<[Arc<dyn AuthnBackend>]>,
    allow_anonymous: bool,
    runtime: Option<Handle>,
}

impl AuthnChain {
    /// A chain of `backends`, ending in `allow_anonymous`. Checks that answer later run on the
    /// caller's runtime, or else on the one this is called in.
    pub fn new(backends: Vec<Arc<dyn AuthnBackend>>, allow_anonymous: bool) -> AuthnChain {
        AuthnChain {
            backends: backends.into(),
            allow_anonymous,
            runtime: Handle::try_current().ok(),
        }
    }
}

/// The chain's result when `verdict` decides, `None` to ask the next backend.
fn authn_decided(verdict: AuthnVerdict) -> Option<AuthResult> {
    match verdict {
        AuthnVerdict::Allow { superuser, acl } => Some(AuthResult::Allow { superuser, acl }),
        AuthnVerdict::Deny(refusal) => Some(AuthResult::Deny(refusal)),
        AuthnVerdict::Ignore => None,
    }
}

fn anonymous(allow_anonymous: bool) -> AuthResult {
    if allow_anonymous {
        AuthResult::ALLOW
    } else {
        AuthResult::Deny(Refusal::NotAuthorized)
    }
}

impl Authenticator for AuthnChain {
    fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> Verdict<AuthResult> {
        for (index, backend) in self.backends.iter().enumerate() {
            match backend.check(client, password) {
                Check::Now(verdict) => {
                    if let Some(result) = authn_decided(verdict) {
                        return Verdict::Ready(result);
                    }
                }
                Check::Later(future) => {
                    let (pending, resolver) = pending_pair();
                    let backends = self.backends.clone();
                    let allow_anonymous = self.allow_anonymous;
                    let client = client.clone();
                    let password = password.map(Bytes::copy_from_slice);
                    spawn(&self.runtime, async move {
                        let mut verdict = future.await;
                        for backend in &backends[index + 1..] {
                            if authn_decided(verdict.clone()).is_some() {
                                break;
                            }
                            verdict = backend.check(&client, password.as_deref()).resolve().await;
                        }
                        resolver.resolve(authn_decided(verdict).unwrap_or_else(|| anonymous(allow_anonymous)));
                    });
                    return Verdict::Pending(pending);
                }
            }
        }
        Verdict::Ready(anonymous(self.allow_anonymous))
    }
}

/// Sources asked in order: the first allow or deny decides; none matching → `no_match`.
pub struct AuthzChain {
    sources: Arc<[Arc<dyn AuthzSource>]>,
    no_match_allow: bool,
    runtime: Option<Handle>,
}

impl AuthzChain {
    /// A chain of `sources`, ending in `no_match` (true = allow).
    pub fn new(sources: Vec<Arc<dyn AuthzSource>>, no_match_allow: bool) -> AuthzChain {
        AuthzChain {
            sources: sources.into(),
            no_match_allow,
            runtime: Handle::try_current().ok(),
        }
    }
}

fn authz_decided(verdict: AuthzVerdict) -> Option<bool> {
    match verdict {
        AuthzVerdict::Allow => Some(true),
        AuthzVerdict::Deny => Some(false),
        AuthzVerdict::Ignore => None,
    }
}

impl Authorizer for AuthzChain {
    fn authorize(&self, client: &ClientInfo, action: Action, topic: &str) -> Verdict<bool> {
        if client.superuser {
            return Verdict::Ready(true);
        }
        for (index, source) in self.sources.iter().enumerate() {
            match source.check(client, action, topic) {
                Check::Now(verdict) => {
                    if let Some(allowed) = authz_decided(verdict) {
                        return Verdict::Ready(allowed);
                    }
                }
                Check::Later(future) => {
                    let (pending, resolver) = pending_pair();
                    let sources = self.sources.clone();
                    let no_match_allow = self.no_match_allow;
                    let client = client.clone();
                    let topic = topic.to_owned();
                    spawn(&self.runtime, async move {
                        let mut verdict = future.await;
                        for source in &sources[index + 1..] {
                            if authz_decided(verdict).is_some() {
                                break;
                            }
                            verdict = source.check(&client, action, &topic).resolve().await;
                        }
                        resolver.resolve(authz_decided(verdict).unwrap_or(no_match_allow));
                    });
                    return Verdict::Pending(pending);
                }
            }
        }
        Verdict::Ready(self.no_match_allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use portico_core::auth::Pending;
    use portico_core::conn::{ConnHandle, ConnId};

    struct Fixed(AuthnVerdict);
    impl AuthnBackend for Fixed {
        fn check(&self, _: &ClientInfo, _: Option<&[u8]>) -> Check<AuthnVerdict> {
            Check::Now(self.0.clone())
        }
    }

    /// Answers from a future, after a short sleep.
    struct Slow(AuthnVerdict);
    impl AuthnBackend for Slow {
        fn check(&self, _: &ClientInfo, _: Option<&[u8]>) -> Check<AuthnVerdict> {
            let verdict = self.0.clone();
            Check::Later(Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                verdict
            }))
        }
    }

    struct Rule(&'static str, AuthzVerdict, bool);
    impl AuthzSource for Rule {
        fn check(&self, _: &ClientInfo, _: Action, topic: &str) -> Check<AuthzVerdict> {
            let verdict = if topic == self.0 { self.1 } else { AuthzVerdict::Ignore };
            if self.2 {
                Check::Later(Box::pin(async move { verdict }))
            } else {
                Check::Now(verdict)
            }
        }
    }

    fn client() -> ClientInfo {
        ClientInfo::new(
            ByteString::from_static("c"),
            None,
            "127.0.0.1:1".parse().expect("address"),
            "mqtt",
        )
    }

    fn ready<T: std::fmt::Debug>(verdict: Verdict<T>) -> T {
        match verdict {
            Verdict::Ready(value) => value,
            Verdict::Pending(_) => panic!("expected an answer now"),
        }
    }

    /// Waits (polling, as a channel would on its delivery signal) for a pending answer.
    async fn answer<T>(verdict: Verdict<T>) -> T {
        let pending: Pending<T> = match verdict {
            Verdict::Ready(value) => return value,
            Verdict::Pending(pending) => pending,
        };
        let conn = ConnHandle::new(ConnId(1));
        for _ in 0..1000 {
            if let Some(result) = pending.poll(&conn) {
                return result.expect("answered, not abandoned");
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("no answer within a second");
    }

    #[test]
    fn first_decision_wins_and_all_ignore_falls_to_anonymous() {
        let ignore: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::Ignore));
        let deny: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::Deny(Refusal::BadCredentials)));
        let allow: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::allow(true)));
        let chain = AuthnChain::new(vec![ignore.clone(), deny.clone(), allow.clone()], true);
        assert_eq!(
            ready(chain.authenticate(&client(), None)),
            AuthResult::Deny(Refusal::BadCredentials)
        );
        let chain = AuthnChain::new(vec![ignore.clone(), allow], false);
        assert_eq!(
            ready(chain.authenticate(&client(), None)),
            AuthResult::Allow {
                superuser: true,
                acl: None
            }
        );
        let open = AuthnChain::new(vec![ignore.clone()], true);
        assert_eq!(ready(open.authenticate(&client(), None)), AuthResult::ALLOW);
        let closed = AuthnChain::new(vec![ignore], false);
        assert_eq!(
            ready(closed.authenticate(&client(), None)),
            AuthResult::Deny(Refusal::NotAuthorized)
        );
    }

    #[tokio::test]
    async fn a_backend_that_answers_later_continues_the_chain_on_a_task() {
        let slow_ignore: Arc<dyn AuthnBackend> = Arc::new(Slow(AuthnVerdict::Ignore));
        let deny: Arc<dyn AuthnBackend> = Arc::new(Fixed(AuthnVerdict::Deny(Refusal::BadCredentials)));
        let chain = AuthnChain::new(vec![slow_ignore.clone(), deny], true);
        assert_eq!(
            answer(chain.authenticate(&client(), None)).await,
            AuthResult::Deny(Refusal::BadCredentials),
            "the backend after the slow one still decides"
        );
        let slow_allow: Arc<dyn AuthnBackend> = Arc::new(Slow(AuthnVerdict::allow(false)));
        let chain = AuthnChain::new(vec![slow_ignore.clone(), slow_allow], false);
        assert_eq!(answer(chain.authenticate(&client(), None)).await, AuthResult::ALLOW);
        let chain = AuthnChain::new(vec![slow_ignore], false);
        assert_eq!(
            answer(chain.authenticate(&client(), None)).await,
            AuthResult::Deny(Refusal::NotAuthorized),
            "all ignore: anonymous decides, late too"
        );
    }

    #[test]
    fn sources_in_order_then_no_match_and_superusers_pass() {
        let chain = AuthzChain::new(
            vec![
                Arc::new(Rule("a", AuthzVerdict::Deny, false)),
                Arc::new(Rule("a", AuthzVerdict::Allow, false)),
                Arc::new(Rule("b", AuthzVerdict::Allow, false)),
            ],
            false,
        );
        let c = client();
        assert!(
            !ready(chain.authorize(&c, Action::Publish, "a")),
            "the first source decides"
        );
        assert!(ready(chain.authorize(&c, Action::Publish, "b")));
        assert!(
            !ready(chain.authorize(&c, Action::Publish, "z")),
            "no match = deny here"
        );
        let superuser = ClientInfo { superuser: true, ..c };
        assert!(ready(chain.authorize(&superuser, Action::Publish, "a")));
    }

    #[tokio::test]
    async fn late_sources_keep_the_order() {
        let chain = AuthzChain::new(
            vec![
                Arc::new(Rule("a", AuthzVerdict::Allow, true)),
                Arc::new(Rule("b", AuthzVerdict::Deny, false)),
            ],
            true,
        );
        let c = client();
        assert!(answer(chain.authorize(&c, Action::Publish, "a")).await);
        assert!(!answer(chain.authorize(&c, Action::Publish, "b")).await);
        assert!(
            answer(chain.authorize(&c, Action::Publish, "z")).await,
            "no match = allow here"
        );
    }

    #[test]
    fn without_a_runtime_a_late_check_is_abandoned_not_hung() {
        let chain = AuthnChain::new(vec![Arc::new(Slow(AuthnVerdict::allow(false)))], true);
        let Verdict::Pending(pending) = chain.authenticate(&client(), None) else {
            panic!("the slow backend answers later")
        };
        let conn = ConnHandle::new(ConnId(1));
        assert_eq!(pending.poll(&conn).map(|r| r.is_err()), Some(true));
    }
}
