//! Error responses in EMQX 5's shape: an HTTP status and `{"code": "...", "message": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// Every authentication failure gets this one answer, whatever was wrong (no token, a
    /// bad or expired one, an unknown key, a wrong secret or password): telling them apart
    /// would help a guesser.
    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "BAD_USERNAME_OR_PWD", "authentication failed")
    }

    /// A valid principal asking for something its kind may not do.
    pub(crate) fn forbidden(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The same error, saying which element of a list it is about.
    pub(crate) fn at_index(mut self, index: usize) -> ApiError {
        self.message = format!("[{index}] {}", self.message);
        self
    }

    /// Logins for a user name locked after repeated failures (see `lockout`).
    pub(crate) fn locked(remaining: std::time::Duration) -> ApiError {
        let seconds = remaining.as_secs().max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "LOGIN_LOCKED",
            format!("too many failed logins for this user name; try again in {seconds} s"),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"code": self.code, "message": self.message}))).into_response()
    }
}

/// A JSON body that does not parse becomes EMQX's 400 `BAD_REQUEST` instead of axum's text.
pub(crate) fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BAD_REQUEST",
            format!("request body larger than {} bytes", crate::MAX_BODY_BYTES),
        );
    }
    ApiError::bad_request(rejection.body_text())
}

/// Same for a query string.
pub(crate) fn query_rejection(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// A JSON object deserialized into `T`. serde's derived `Deserialize` of a struct also takes
/// an array of its fields in order (`[null, null]` for a two-field body), which no client
/// means and the OpenAPI document does not allow; every struct a body holds is read through
/// this, which refuses anything but an object.
pub(crate) struct Strict<T>(pub(crate) T);

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Strict<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(deserializer)?;
        if !value.is_object() {
            return Err(D::Error::custom(format!("expected a JSON object, got {value}")));
        }
        // A deserializer of its own, so track the path within (`rules[0].permission`) as
        // axum's `Json` does for the outer one.
        serde_path_to_error::deserialize(value).map(Strict).map_err(|error| {
            let path = error.path().to_string();
            if path == "." {
                D::Error::custom(error.into_inner())
            } else {
                D::Error::custom(format!("{path}: {}", error.into_inner()))
            }
        })
    }
}

/// The structs of a list of [`Strict`] ones.
pub(crate) fn strict_all<T>(items: Vec<Strict<T>>) -> Vec<T> {
    items.into_iter().map(|Strict(item)| item).collect()
}
