//! The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`,
//! and a small landing page at `/`. Handlers only read shared state (and
//! `/-/reload` asks the app to reload); none waits on a check.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;
use crate::metrics::Format;

/// The exporter's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .route("/-/reload", post(reload))
        .with_state(app)
}

/// Serve until `shutdown` completes, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = format.render(app.registry());
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload().await {
        Ok(n) => (StatusCode::OK, format!("config reloaded: {n} checks\n")).into_response(),
        Err(errors) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("config reload failed; the previous config keeps running:\n{errors}\n"),
        )
            .into_response(),
    }
}

async fn index(State(app): State<Arc<App>>) -> Html<String> {
    let checks = app.store().checks();
    let failing = checks
        .iter()
        .filter(|c| c.last().is_some_and(|r| r.result.is_err()))
        .count();
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>runbook-exporter</title></head>\n\
         <body><h1>runbook-exporter {}</h1>\n<p>{} checks configured, {} failing.</p>\n\
         <ul><li><a href=\"metrics\">metrics</a></li><li><a href=\"-/healthy\">healthy</a></li>\
         <li><a href=\"-/ready\">ready</a></li></ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        checks.len(),
        failing
    ))
}
