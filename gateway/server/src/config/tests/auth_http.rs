//! HTTP authentication and authorization keys.

use std::time::Duration;

use portico_auth::http::{Method, OnError, default_headers};

use super::*;

#[test]
fn http_authenticator_and_source_with_defaults_and_overrides() {
    let file = r#"
authentication = [
  { mechanism = "password_based", backend = "http", url = "http://127.0.0.1:8080/auth/${clientid}" },
  { mechanism = "password_based", backend = "http", method = "get", url = "https://auth.example.com/q",
    headers = { "X-Api-Key" = "k" }, body = { u = "${username}", p = "${password}" },
    request_timeout = "300ms", pool_size = 4, max_inflight = 16, on_error = "deny" },
]
[authorization]
sources = [{ type = "http", url = "http://127.0.0.1:8080/acl", body = { t = "${topic}", a = "${action}" } }]
"#;
    let config = load_str("http-ok", file, &[]).unwrap();
    let AuthnBackendConfig::Http(first) = &config.authentication[0].backend else {
        panic!("{:?}", config.authentication)
    };
    assert_eq!(first.method, Method::Post);
    assert_eq!(first.url.to_string(), "http://127.0.0.1:8080/auth/${clientid}");
    assert_eq!(first.headers, default_headers(Method::Post));
    let body: Vec<String> = first.body.iter().map(|(k, t)| format!("{k}={t}")).collect();
    assert_eq!(
        body,
        ["username=${username}", "password=${password}"],
        "EMQX's default body"
    );
    assert_eq!(first.request_timeout, Duration::from_secs(5));
    assert_eq!(
        (first.pool_size, first.max_inflight, first.on_error),
        (8, 8, OnError::Ignore)
    );
    let AuthnBackendConfig::Http(second) = &config.authentication[1].backend else {
        panic!("{:?}", config.authentication)
    };
    assert_eq!(second.method, Method::Get);
    assert_eq!(second.headers, vec![("x-api-key".to_owned(), "k".to_owned())]);
    assert_eq!(second.request_timeout, Duration::from_millis(300));
    assert_eq!(
        (second.pool_size, second.max_inflight, second.on_error),
        (4, 16, OnError::Deny)
    );
    let AuthzSourceConfig::Http(source) = &config.authorization.sources[0] else {
        panic!("{:?}", config.authorization.sources)
    };
    let body: Vec<String> = source.body.iter().map(|(k, t)| format!("{k}={t}")).collect();
    assert_eq!(body, ["a=${action}", "t=${topic}"]);
    assert!(
        !format!("{config:?}").contains("\"k\""),
        "header values are not printed"
    );
}

#[test]
fn bad_http_settings_are_refused_naming_the_key() {
    let cases = [
        (
            r#"url = "http://h/${nope}""#,
            "authentication[0].url",
            "unknown placeholder ${nope}",
        ),
        (
            r#"url = "http://h/", body = { t = "${topic}" }"#,
            "authentication[0].body",
            "${topic}",
        ),
        (r#"url = "ftp://h/""#, "authentication[0].url", "http:// or https://"),
        (r#"url = "no url""#, "authentication[0].url", "not a URL"),
        (
            r#"url = "http://h/", method = "put""#,
            "authentication[0].method",
            "one of post, get",
        ),
        (
            r#"url = "http://h/", headers = { "a b" = "x" }"#,
            "authentication[0].headers",
            "header name",
        ),
        (
            r#"url = "http://h/", on_error = "panic""#,
            "authentication[0].on_error",
            "one of ignore, deny",
        ),
        (
            r#"url = "http://h/", request_timeout = "0s""#,
            "authentication[0].request_timeout",
            "greater than zero",
        ),
        (
            r#"url = "http://h/", pool = 3"#,
            "authentication[0].pool",
            "unknown key",
        ),
        (r#"method = "get""#, "authentication[0]", "missing required key `url`"),
    ];
    for (keys, key, why) in cases {
        let file = format!("authentication = [{{ mechanism = \"password_based\", backend = \"http\", {keys} }}]\n");
        let errors = errors_of(load_str("http-bad", &file, &[])).to_string();
        assert!(errors.contains(key) && errors.contains(why), "{keys}: {errors}");
    }
    let errors = errors_of(load_str(
        "http-authz-bad",
        "[authorization]\nsources = [{ type = \"http\", url = \"http://h/${password}\" }]\n",
        &[],
    ))
    .to_string();
    assert!(
        errors.contains("authorization.sources[0].url") && errors.contains("${password}"),
        "{errors}"
    );
}

#[test]
fn http_keys_from_the_environment() {
    let config = load_str(
        "http-env",
        "",
        &[
            ("PORTICO_AUTHENTICATION__1__MECHANISM", "password_based"),
            ("PORTICO_AUTHENTICATION__1__BACKEND", "http"),
            ("PORTICO_AUTHENTICATION__1__URL", "http://127.0.0.1:9/auth"),
            ("PORTICO_AUTHENTICATION__1__ON_ERROR", "deny"),
        ],
    )
    .unwrap();
    let AuthnBackendConfig::Http(settings) = &config.authentication[0].backend else {
        panic!("{:?}", config.authentication)
    };
    assert_eq!(settings.on_error, OnError::Deny);
}
