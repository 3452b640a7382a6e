//! `authentication[] { mechanism = "scram" }`: EMQX 5's SCRAM authenticator (MQTT 5 enhanced
//! authentication): `backend = "built_in_database"` (the only one EMQX has),
//! `algorithm = "sha256" | "sha512"` (default sha256), `iteration_count` (default 4096), and,
//! a Portico extension, `bootstrap_file`: a CSV of `user_id,password[,is_superuser]` whose
//! users are added at start when not present yet.

use std::path::PathBuf;

use super::auth::AuthnBackendConfig;
use super::schema::{Ctx, Section, one_of};
use super::value;

/// The hash of the SCRAM mechanism (`algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramAlgorithmName {
    /// `sha256`: method SCRAM-SHA-256.
    Sha256,
    /// `sha512`: method SCRAM-SHA-512.
    Sha512,
}

/// A SCRAM authenticator's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramConfig {
    /// `algorithm`.
    pub algorithm: ScramAlgorithmName,
    /// `iteration_count`: PBKDF2 rounds given to new users.
    pub iteration_count: u32,
    /// `bootstrap_file`: users added at start (Portico extension).
    pub bootstrap_file: Option<PathBuf>,
}

pub(super) fn scram(s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthnBackendConfig> {
    let backend = s.required(ctx, "backend", |v| match value::string(v)?.as_str() {
        "built_in_database" => Ok(()),
        _ => Err("expected \"built_in_database\" (the only SCRAM backend)".to_owned()),
    });
    let algorithm = s.field(ctx, "algorithm", ScramAlgorithmName::Sha256, |v| {
        one_of(
            v,
            &[
                (ScramAlgorithmName::Sha256, "sha256"),
                (ScramAlgorithmName::Sha512, "sha512"),
            ],
        )
    });
    let iteration_count = s.field(ctx, "iteration_count", 4096, |v| value::int_in(v, 1, 10_000_000));
    let bootstrap_file = s
        .read(ctx, "bootstrap_file", |v| value::non_empty_string(v).map(PathBuf::from))
        .ok()
        .flatten();
    backend?;
    Some(AuthnBackendConfig::Scram(ScramConfig {
        algorithm,
        iteration_count,
        bootstrap_file,
    }))
}
