//! The HTTP edge both services stand on: what every request passes through whatever the route.
//!
//! - [`Common`] and [`EdgeError`]: the errors every service answers alike (timeout, 413, 404,
//!   405, 500, malformed JSON, wrong media type), and what a service's error type gives the edge.
//! - [`with_edge`] and [`catch_panics`]: unknown routes and methods answer in the service's
//!   error body, and a panic anywhere becomes its 500.
//! - [`exchange`]: the middleware core: the request deadline, axum's own 413 (a
//!   `DefaultBodyLimit` rejection) turned into the service's body, and then, on whatever answer
//!   goes out, `Cache-Control: no-store` and the request id. The headers come last so that no
//!   rewrite can drop them (the proxy once set them and then replaced its 413).
//! - [`route_template`] and [`access_log!`](crate::access_log): the access log names the route
//!   *template*, never the raw URI: a caller can put anything in a path or query string,
//!   including a card number.
//! - [`presented_key`] and [`path_param`]: the bearer key and the path segments a request
//!   names, for the service to check strictly.
//! - [`live`], the `/healthz` handler.

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

/// The response header that carries the service-made request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The errors every service answers alike: the same status, code and message in both.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Common {
    /// 503: the request outlived its deadline.
    Timeout,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 404: no such route.
    RouteNotFound,
    /// 405: the route does not take that method.
    MethodNotAllowed,
    /// 500: something failed inside (a handler panicked); details are in the log.
    Internal,
    /// 400: the body is not JSON.
    MalformedJson,
    /// 415: not `application/json`.
    UnsupportedMediaType,
}

impl Common {
    /// Status, code and message.
    pub const fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found", "no such route"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ),
            Self::MalformedJson => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the request body is not valid JSON",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be application/json",
            ),
        }
    }
}

/// What a service's API error gives the edge. The service inserts the error into the extensions
/// of every response it makes from one, which is how the edge tells its own answers from axum's.
pub trait EdgeError: IntoResponse + Clone + Send + Sync + 'static {
    /// The service's variant for a common error.
    fn common(common: Common) -> Self;
    /// The stable code, for the access log.
    fn code(&self) -> &'static str;
}

/// Implements [`EdgeError`] for a service's error enum that has a variant of the same name for
/// each [`Common`] error and a `parts()` returning `(status, code, message)`.
#[macro_export]
macro_rules! edge_error {
    ($error:ty) => {
        impl $crate::http::EdgeError for $error {
            fn common(common: $crate::http::Common) -> Self {
                use $crate::http::Common;
                match common {
                    Common::Timeout => Self::Timeout,
                    Common::PayloadTooLarge => Self::PayloadTooLarge,
                    Common::RouteNotFound => Self::RouteNotFound,
                    Common::MethodNotAllowed => Self::MethodNotAllowed,
                    Common::Internal => Self::Internal,
                    Common::MalformedJson => Self::MalformedJson,
                    Common::UnsupportedMediaType => Self::UnsupportedMediaType,
                }
            }

            fn code(&self) -> &'static str {
                self.parts().1
            }
        }
    };
}

/// The 404 and 405 fallbacks, in the service's error, and a panic guard around the handlers.
/// Call it after the routes and before the middleware layers, so that these answers pass
/// through the middleware too.
pub fn with_edge<E: EdgeError, S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(|| async { E::common(Common::RouteNotFound) })
        .method_not_allowed_fallback(|| async { E::common(Common::MethodNotAllowed) })
        // Inside the middleware, so a handler's panic is answered like any error: the service's
        // 500 with the edge's headers and an access-log line.
        .layer(CatchPanicLayer::custom(|_| {
            E::common(Common::Internal).into_response()
        }))
}

/// The outer panic guard. Call it last, so that it is outermost and a panic in the middleware
/// itself still answers the service's 500.
pub fn catch_panics<E: EdgeError, S: Clone + Send + Sync + 'static>(
    router: Router<S>,
) -> Router<S> {
    router.layer(CatchPanicLayer::custom(|_| {
        E::common(Common::Internal).into_response()
    }))
}

/// The API key a request presents as `Authorization: Bearer …`, if it presents one. Never
/// logged or echoed: the services only hash it.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<crate::ids::ApiKey> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::ids::bearer_token)
        .map(crate::ids::ApiKey::presented)
}

/// The value of the `{name}` segment of the matched route, as the caller sent it: the service
/// parses it strictly before using it, and never logs or echoes it.
pub fn path_param<'a>(params: &'a axum::extract::RawPathParams, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(segment, _)| *segment == name)
        .map(|(_, value)| value)
}

/// The matched route template, or `unmatched`.
pub fn route_template(req: &Request) -> Option<&str> {
    req.extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
}

/// Runs the rest of the stack under `deadline`, then makes the answer the edge's: axum's bare
/// 413 becomes the service's, and every answer gets `Cache-Control: no-store` and `request_id`.
/// Returns the response and the service error it was made from, if any.
pub async fn exchange<E: EdgeError>(
    req: Request,
    next: Next,
    deadline: Duration,
    request_id: &str,
) -> (Response, Option<E>) {
    let mut response = match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => E::common(Common::Timeout).into_response(),
    };
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response.extensions().get::<E>().is_none()
    {
        response = E::common(Common::PayloadTooLarge).into_response();
    }
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    let error = response.extensions().get::<E>().cloned();
    (response, error)
}

/// One access-log line: `target` is the service's (`vault::access`), the rest fixed fields
/// (request id, method, route template, status, error code, latency in microseconds). A macro
/// because a tracing target must be a constant at the call site.
#[macro_export]
macro_rules! access_log {
    ($target:literal, $request_id:expr, $method:expr, $route:expr, $status:expr, $code:expr, $elapsed:expr) => {
        $crate::http::__tracing::info!(
            target: $target,
            request_id = %$request_id,
            method = $crate::http::method_label(&$method),
            route = %$route,
            status = $status.as_u16(),
            error = $code.unwrap_or(""),
            latency_us = u64::try_from($elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        )
    };
}

#[doc(hidden)]
pub use tracing as __tracing;

/// The method as the access log names it: one of the standard methods, else `other`. The method
/// is the caller's to choose (digits are valid method characters), so as sent it could carry a
/// card number into the log.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

/// `/healthz`: the process answers.
pub async fn live() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[derive(Clone, Copy, Debug)]
    struct TestError(Common);

    impl IntoResponse for TestError {
        fn into_response(self) -> Response {
            let mut r = (self.0.parts().0, self.0.parts().1).into_response();
            r.extensions_mut().insert(self);
            r
        }
    }

    impl EdgeError for TestError {
        fn common(common: Common) -> Self {
            Self(common)
        }
        fn code(&self) -> &'static str {
            self.0.parts().1
        }
    }

    #[allow(clippy::panic, reason = "the panic is the test")]
    async fn panics() -> &'static str {
        panic!("a handler bug")
    }

    /// A handler's panic is answered like any error: the service's 500, through the edge.
    #[tokio::test]
    async fn a_panic_is_answered_through_the_edge() {
        let routes = with_edge::<TestError, ()>(Router::new().route("/boom", get(panics)));
        let app = catch_panics::<TestError, ()>(routes.layer(axum::middleware::from_fn(
            |req: Request, next: Next| async move {
                exchange::<TestError>(req, next, Duration::from_secs(5), "req_t")
                    .await
                    .0
            },
        )));
        for path in ["/boom", "/missing"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let want = if path == "/boom" { 500 } else { 404 };
            assert_eq!(resp.status().as_u16(), want, "{path}");
            assert_eq!(resp.headers()[CACHE_CONTROL], "no-store", "{path}");
            assert_eq!(resp.headers()[REQUEST_ID], "req_t", "{path}");
        }
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
        let odd = axum::http::Method::from_bytes(b"4970100000130001").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
