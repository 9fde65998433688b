//! The HTTP endpoints: `/metrics`, `/probe`, the status page at `/`,
//! `/-/healthy`, `/-/ready` and `/-/reload`, served over HTTP or HTTPS with
//! the web config's authentication. Handlers only read shared state (and
//! `/-/reload` asks the app to reload); none waits on a scheduled check.

mod listener;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use url::form_urlencoded;

use crate::app::{App, ProbeTable};
use crate::config::TargetError;
use crate::metrics::{self, Format};
use crate::scheduler::run_holding;
use crate::web::WebConfig;

/// Options of the HTTP server that are not in the config file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether `POST /-/reload` reloads (else it answers 403).
    pub enable_reload: bool,
    /// Time a client has to send a complete request head, from its first
    /// byte (for the first request on a connection, from the connection's
    /// start). Slowloris clients are disconnected when it runs out.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request (no
    /// request in flight) before it is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; past it, new connections wait in the
    /// listen backlog until one closes. At least 1.
    pub max_connections: usize,
    /// Time a response may wait, with no byte going out, for the client to
    /// read it before the connection is closed: a client that stops reading
    /// a large body cannot hold a connection (and its slot under
    /// `max_connections`) for ever.
    pub write_stall_timeout: Duration,
}

/// Default of `Options::header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `Options::idle_timeout`: longer than common scrape intervals,
/// so Prometheus keeps reusing its connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `Options::max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `Options::write_stall_timeout`: a scrape whose client has not
/// read for this long has been given up by Prometheus long before.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Options {
    fn default() -> Self {
        Self {
            enable_reload: true,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }
}

#[derive(Clone)]
struct Ctx {
    app: Arc<App>,
    options: Options,
}

/// The exporter's routes, without the web config's layers.
pub fn router(app: Arc<App>, options: Options) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .route("/-/reload", post(reload))
        .with_state(Ctx { app, options })
}

/// Serve until `shutdown` completes, then let in-flight requests finish.
/// Connections are accepted and bounded by `listener::serve`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    options: Options,
    web: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = web.apply(router(app, options));
    listener::serve(listener, router, web.tls, options, shutdown).await
}

async fn metrics(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let format = negotiate(&headers);
    let checks = ctx.app.store().checks();
    let registry = Some(ctx.app.registry());
    let content_type = (header::CONTENT_TYPE, format.content_type());
    let vary = (header::VARY, "accept, accept-encoding");
    let accept_encoding = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    if metrics::accepts_gzip(accept_encoding) {
        // Compressing is CPU work that can take a second at 100,000 checks:
        // a blocking thread does it, so the scheduler's workers never wait.
        let app = ctx.app.clone();
        let compressed = tokio::task::spawn_blocking(move || {
            metrics::exposition_gzip(&checks, Some(app.registry()), format)
        })
        .await;
        let Ok(pieces) = compressed else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "compressing the body failed",
            )
                .into_response();
        };
        let body = axum::body::Body::from_stream(futures::stream::iter(
            pieces.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        let encoding = (header::CONTENT_ENCODING, "gzip");
        return ([content_type, vary, encoding], body).into_response();
    }
    // Uncompressed, the body is sent in chunks made as the client reads
    // them, so a scrape of 100,000 checks (about 130 MB of text) never
    // holds the whole text, and a client that stops reading stops the work.
    let mut body = metrics::PlainBody::new(&checks, registry, format);
    let first = body.next_chunk().unwrap_or_default();
    if body.is_done() {
        return ([content_type, vary], first).into_response();
    }
    let rest = futures::stream::unfold(body, |mut body| async move {
        body.next_chunk().map(|chunk| (chunk, body))
    });
    let chunks = futures::StreamExt::map(
        futures::StreamExt::chain(futures::stream::once(async { first }), rest),
        |chunk| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)),
    );
    ([content_type, vary], axum::body::Body::from_stream(chunks)).into_response()
}

fn negotiate(headers: &HeaderMap) -> Format {
    Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

async fn reload(State(ctx): State<Ctx>) -> Response {
    if !ctx.options.enable_reload {
        return (
            StatusCode::FORBIDDEN,
            "reload over HTTP is disabled (--web.enable-reload=false); send SIGHUP instead\n",
        )
            .into_response();
    }
    match ctx.app.reload().await {
        Ok(n) => (StatusCode::OK, format!("config reloaded: {n} checks\n")).into_response(),
        Err(errors) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("config reload failed; the previous config keeps running:\n{errors}\n"),
        )
            .into_response(),
    }
}

async fn status_page(State(ctx): State<Ctx>) -> Html<String> {
    Html(crate::status::render(&ctx.app.store().checks()))
}

/// Time kept back from Prometheus's scrape timeout to send the answer.
const PROBE_RESPONSE_MARGIN: Duration = Duration::from_millis(100);

/// `GET /probe?module=NAME&target=T`: run module NAME once with its target
/// replaced by T, and answer with that run's metrics only. Only `modules:`
/// are probeable; a module with `allowed_targets` runs only against hosts it
/// lists. The run is aborted if the caller hangs up.
async fn probe(State(ctx): State<Ctx>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let bad = |status: StatusCode, msg: String| (status, format!("{msg}\n")).into_response();
    let (module, target) = probe_params(query.as_deref().unwrap_or(""));
    let Some(module) = module else {
        return bad(StatusCode::BAD_REQUEST, "missing parameter: module".into());
    };
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return bad(StatusCode::BAD_REQUEST, "missing parameter: target".into());
    };
    let (module, target) = (module.as_ref(), target.as_ref());
    let table = ctx.app.probes();
    let Some(template) = table.modules.get(module) else {
        return bad(StatusCode::BAD_REQUEST, unknown_module(&table, module));
    };
    // A module's own allowed_targets replace the global regexes; they are
    // matched on the parsed host and port in `with_target`.
    if template.allowed_targets().is_none() && !table.allows(target) {
        return bad(
            StatusCode::FORBIDDEN,
            format!("target {target:?} is not allowed by probe.allowed_targets"),
        );
    }
    // Taken before the check is built, so a flood of probes cannot make
    // the exporter read files and build TLS configs beyond the cap.
    let Some(permit) = ctx.app.try_probe_permit() else {
        return bad(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many probes in flight (limit {})",
                crate::app::MAX_CONCURRENT_PROBES
            ),
        );
    };
    let check = match template.with_target(target) {
        Ok(c) => c,
        Err(TargetError::NotAllowed(e)) => return bad(StatusCode::FORBIDDEN, e),
        Err(TargetError::Invalid(e)) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let mut timeout = template.timeout;
    if let Some(scrape) = scrape_timeout(&headers) {
        let scrape = scrape.saturating_sub(PROBE_RESPONSE_MARGIN);
        timeout = timeout.min(scrape.max(Duration::from_millis(1)));
    }
    let held = (permit, ctx.app.store().probe_in_flight());
    let record = run_holding(check, timeout, held).await;
    let format = negotiate(&headers);
    let body = metrics::probe_exposition(
        template.name.clone(),
        template.kind(),
        template.labels.clone(),
        record,
        format,
    );
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// The `module` and `target` parameters of a `/probe` query string,
/// percent-decoded (invalid UTF-8 replaced), the last of each if repeated.
/// Other parameters are ignored.
fn probe_params(query: &str) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    let (mut module, mut target) = (None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "module" => module = Some(value),
            "target" => target = Some(value),
            _ => {}
        }
    }
    (module, target)
}

/// Why `module` names nothing `/probe` can run, and what to do about it.
fn unknown_module(table: &ProbeTable, module: &str) -> String {
    if table.is_check(module) {
        format!(
            "{module:?} is a scheduled check, and scheduled checks cannot be probed (their \
             credentials must not follow a caller's target); define a module under modules: \
             with the same fields (and allowed_targets: if it carries credentials), and probe that"
        )
    } else {
        format!("unknown module {module:?}: define it under modules: in the config")
    }
}

/// Prometheus's scrape timeout, from `X-Prometheus-Scrape-Timeout-Seconds`.
/// `None` unless it is a positive number of seconds that a `Duration` holds:
/// zero, negative, NaN, infinite, huge (`1e300`) or non-numeric values are
/// ignored, and the module timeout applies.
fn scrape_timeout(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::probe_params;

    #[test]
    fn probe_params_are_decoded_and_the_last_of_each_wins() {
        let (module, target) =
            probe_params("module=a&target=x&other=1&target=http%3A%2F%2Fh%2F%3Fq%3D1+2");
        assert_eq!(module.as_deref(), Some("a"));
        assert_eq!(target.as_deref(), Some("http://h/?q=1 2"));
        let (module, target) = probe_params("module=a&module=b&target=");
        assert_eq!(
            (module.as_deref(), target.as_deref()),
            (Some("b"), Some(""))
        );
        assert_eq!(probe_params(""), (None, None));
        // Invalid UTF-8 is replaced, as the query extractor did.
        let (_, target) = probe_params("target=%FF");
        assert_eq!(target.as_deref(), Some("\u{FFFD}"));
    }
}
