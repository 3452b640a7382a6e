//! Authentication and authorization backends behind core's `Authenticator` and `Authorizer`
//! traits, in EMQX's shape: an authentication chain whose backends answer allow / deny / ignore
//! (all ignore → `allow_anonymous`), and authorization sources tried in order, first match wins
//! (no match → `no_match`).
//!
//! - [`password`]: EMQX-compatible password hashing (plain, md5, sha, sha256, sha512 with salt
//!   prefix or suffix; pbkdf2; bcrypt; argon2).
//! - [`builtin`]: the built-in user database, kept in the durable store.
//! - [`acl`]: EMQX's `acl.conf` rule file.
//! - [`db`]: PostgreSQL, MySQL / MariaDB and Redis backends and sources.
//! - [`http`]: a web service's answer (EMQX `backend = "http"`, `type = "http"`).
//! - [`chain`]: the chains themselves.

use std::sync::Arc;

use portico_core::auth::{ClientAcl, Refusal, same_acl};

pub mod acl;
pub mod authz_db;
pub mod builtin;
pub mod chain;
pub mod db;
pub mod http;
pub mod jwt;
pub mod password;
pub mod rules;
pub mod scram;
pub mod slow;
pub mod template;
mod user_table;

/// What one authentication backend says about a client.
#[derive(Debug, Clone)]
pub enum AuthnVerdict {
    /// Known and the credentials are right; superusers bypass authorization.
    Allow {
        /// Skip authorization for this client.
        superuser: bool,
        /// Rules that came with the credentials (JWT `acl` claim).
        acl: Option<Arc<dyn ClientAcl>>,
    },
    /// Known and refused (wrong password, ...): the chain stops here.
    Deny(Refusal),
    /// This backend knows nothing about the client: ask the next one.
    Ignore,
}

impl AuthnVerdict {
    /// Allowed, with no rules of its own.
    pub const fn allow(superuser: bool) -> AuthnVerdict {
        AuthnVerdict::Allow { superuser, acl: None }
    }
}

/// Equal when both allow with the same flag and the same rules (the same `Arc`), both deny for
/// the same reason, or both ignore.
impl PartialEq for AuthnVerdict {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AuthnVerdict::Allow { superuser: a, acl: x }, AuthnVerdict::Allow { superuser: b, acl: y }) => {
                a == b && same_acl(x, y)
            }
            (AuthnVerdict::Deny(a), AuthnVerdict::Deny(b)) => a == b,
            (AuthnVerdict::Ignore, AuthnVerdict::Ignore) => true,
            _ => false,
        }
    }
}

/// What one authorization source says about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzVerdict {
    /// A rule allows it: stop here.
    Allow,
    /// A rule denies it: stop here.
    Deny,
    /// No rule of this source matches: ask the next source.
    Ignore,
}
