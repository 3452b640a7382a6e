//! `authorization.sources[] { type = "built_in_database" }`: EMQX 5's rule database source,
//! with `max_rules` (rules per client id, user name or "all"; EMQX's default 100).

use super::auth::AuthzSourceConfig;
use super::schema::{Ctx, Section};
use super::value;

/// EMQX's default `max_rules`.
const DEFAULT_MAX_RULES: usize = 100;

pub(super) fn built_in_database(s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthzSourceConfig> {
    let max_rules = s.field(ctx, "max_rules", DEFAULT_MAX_RULES, |v| value::int_in(v, 1, 100_000));
    Some(AuthzSourceConfig::BuiltInDatabase { max_rules })
}
