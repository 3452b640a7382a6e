//! Authentication and authorization backends behind core's `Authenticator` and `Authorizer`
//! traits, in EMQX's shape: an authentication chain whose backends answer allow / deny / ignore
//! (all ignore → `allow_anonymous`), and authorization sources tried in order, first match wins
//! (no match → `no_match`).
//!
//! - [`password`]: EMQX-compatible password hashing (plain, md5, sha, sha256, sha512 with salt
//!   prefix or suffix; pbkdf2; bcrypt; argon2).
//! - [`builtin`]: the built-in user database, kept in the durable store.
//! - [`acl`]: EMQX's `acl.conf` rule file.
//! - [`chain`]: the chains themselves.

use portico_core::auth::Refusal;

pub mod acl;
pub mod builtin;
pub mod chain;
pub mod jwt;
pub mod password;

/// What one authentication backend says about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthnVerdict {
    /// Known and the credentials are right; superusers bypass authorization.
    Allow {
        /// Skip authorization for this client.
        superuser: bool,
    },
    /// Known and refused (wrong password, ...): the chain stops here.
    Deny(Refusal),
    /// This backend knows nothing about the client: ask the next one.
    Ignore,
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
