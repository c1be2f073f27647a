//! The one-line fetches the tests make over and over: send a request and read its body as JSON
//! or text, panicking with the URL when either fails (a test's failure names what it fetched).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::future::Future;

/// A request sent and its whole body read, for tests.
pub trait Fetch {
    /// The body as JSON (whatever the status).
    fn json_body(self) -> impl Future<Output = serde_json::Value> + Send;
    /// The body as text (whatever the status).
    fn text_body(self) -> impl Future<Output = String> + Send;
}

impl Fetch for reqwest::RequestBuilder {
    async fn json_body(self) -> serde_json::Value {
        let (url, response) = answered(self).await;
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url} answered no JSON: {e}"))
    }

    async fn text_body(self) -> String {
        let (url, response) = answered(self).await;
        response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{url} answered no text: {e}"))
    }
}

async fn answered(request: reqwest::RequestBuilder) -> (reqwest::Url, reqwest::Response) {
    let response = request.send().await.expect("the request is answered");
    (response.url().clone(), response)
}
