//! `dashboard.*`: the HTTP API listener and its first admin.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn defaults_follow_emqx_but_with_no_password() {
    let d = Config::default().dashboard;
    assert!(d.http_enable);
    assert_eq!(d.http_bind, addr("0.0.0.0:18083"));
    assert_eq!(d.default_username, "admin");
    assert_eq!(d.default_password, None, "never a fixed default password");
    assert_eq!(d.token_expired_time, Duration::from_secs(3600));
}

#[test]
fn keys_from_file_and_env() {
    let config = load_str(
        "dashboard-keys",
        "[dashboard]\ndefault_username = \"root\"\ntoken_expired_time = \"5m\"\n[dashboard.listeners.http]\nbind = 28083\n",
        &[("PORTICO_DASHBOARD__DEFAULT_PASSWORD", "long-enough-1")],
    )
    .unwrap();
    let d = config.dashboard;
    assert_eq!(d.http_bind, addr("0.0.0.0:28083"));
    assert_eq!(d.default_username, "root");
    assert_eq!(d.token_expired_time, Duration::from_secs(300));
    assert_eq!(d.default_password, Some(Secret(b"long-enough-1".to_vec())));
}

#[test]
fn bad_values_are_reported_without_the_password() {
    let errors = errors_of(load_str(
        "dashboard-bad",
        "[dashboard]\ndefault_password = \"short\"\ndefault_username = \"\"\n[dashboard.listeners.http]\nbind = \"nowhere\"\nport = 1\n",
        &[],
    ));
    let text = errors.to_string();
    for key in [
        "dashboard.default_password",
        "dashboard.default_username",
        "dashboard.listeners.http.bind",
        "dashboard.listeners.http.port",
    ] {
        assert!(text.contains(key), "{key} not reported in {text}");
    }
    assert!(!text.contains("short"), "the password is not shown: {text}");
}

#[test]
fn an_empty_password_means_unset() {
    let config = Config::load(None, vars(&[("PORTICO_DASHBOARD__DEFAULT_PASSWORD", "")])).unwrap();
    assert_eq!(config.dashboard.default_password, None);
}
