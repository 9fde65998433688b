//! One `http` run's request and its redirects: the loop that follows them
//! (inside a `/probe` module's `allowed_targets`), and the building of each
//! request with its default headers, where the configured headers and the
//! credential headers go only to the configured origin.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use url::Url;

use super::connect::{send, Connection, Route};
use super::trace::Trace;
use super::HttpCheck;
use crate::checks::shared::targets::{is_credential_header, Endpoint};
use crate::checks::Reason;

const USER_AGENT: &str = concat!("runbook-exporter/", env!("CARGO_PKG_VERSION"));

impl HttpCheck {
    /// The request, its redirects and the checks on the final response.
    pub(super) async fn exchange(&self, trace: &mut Trace) -> Result<(), (Reason, String)> {
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        loop {
            trace.status = None;
            trace.expiry = None;
            trace.dial.clear();
            let (response, connection) = self.request(&url, &method, body.as_ref(), trace).await?;
            let status = response.status();
            trace.status = Some(status.as_u16());
            trace.final_tls = url.scheme() == "https";

            if let Some(next) = self.redirect_target(&url, &response, trace.redirects)? {
                trace.redirects += 1;
                if redirects_to_get(status, &method) {
                    method = Method::GET;
                    body = None;
                }
                drop(connection);
                url = next;
                continue;
            }

            self.check_status(status, &url, trace.redirects)?;
            let body = self.read_body(response, connection, trace).await?;
            return self.check_body(&body);
        }
    }

    /// Where `response` redirects to, if it is a redirect to follow; an error
    /// for one past `max_redirects`, without a usable `Location`, or to a URL
    /// this check may not request.
    fn redirect_target(
        &self,
        url: &Url,
        response: &Response<Incoming>,
        redirects: u32,
    ) -> Result<Option<Url>, (Reason, String)> {
        let status = response.status();
        if !self.follow_redirects || !is_redirect(status) {
            return Ok(None);
        }
        let Some(location) = response.headers().get(header::LOCATION) else {
            return Ok(None);
        };
        if redirects >= self.max_redirects {
            return Err((
                Reason::UnexpectedResponse,
                format!("too many redirects (more than {})", self.max_redirects),
            ));
        }
        let next = location
            .to_str()
            .ok()
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| {
                (
                    Reason::Protocol,
                    format!("HTTP {} with an invalid Location header", status.as_u16()),
                )
            })?;
        if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
            return Err((
                Reason::UnexpectedResponse,
                format!("redirected to unsupported URL {}", display_url(&next)),
            ));
        }
        self.redirect_allowed(&next)?;
        Ok(Some(next))
    }

    /// Refuse a redirect to a host outside a `/probe` module's
    /// `allowed_targets`: following it would hand the module's request to a
    /// host the operator did not allow.
    fn redirect_allowed(&self, next: &Url) -> Result<(), (Reason, String)> {
        let Some(allowed) = &self.allowed_redirects else {
            return Ok(());
        };
        match Endpoint::from_url(next, 80) {
            Some(endpoint) if allowed.allows(&endpoint) => Ok(()),
            _ => Err((
                Reason::UnexpectedResponse,
                format!(
                    "redirected to {}, which the module's allowed_targets do not allow; not followed",
                    display_url(next)
                ),
            )),
        }
    }

    /// One request and its response headers: resolve, connect, TLS, send.
    async fn request(
        &self,
        url: &Url,
        method: &Method,
        body: Option<&Bytes>,
        trace: &mut Trace,
    ) -> Result<(Response<Incoming>, Connection), (Reason, String)> {
        let host = url.host().ok_or_else(|| {
            (
                Reason::Internal,
                format!("URL {} has no host", display_url(url)),
            )
        })?;
        let port = url.port_or_known_default().unwrap_or(80);
        let (stream, route) = self.connect(url, &host, port, trace).await?;

        let request = self.build_request(url, method, body, route)?;
        if url.scheme() != "https" {
            return send(stream, request, trace).await;
        }
        let stream = self.tls_handshake(url, &host, stream, trace).await?;
        send(stream, request, trace).await
    }

    /// The request to `url` with its default headers and the configured
    /// ones; the `Authorization` header and the origin-bound configured
    /// headers only to the configured origin. To a forwarding proxy the
    /// target is the absolute URL, with the proxy's credentials.
    fn build_request(
        &self,
        url: &Url,
        method: &Method,
        body: Option<&Bytes>,
        route: Route,
    ) -> Result<Request<Full<Bytes>>, (Reason, String)> {
        let internal = |what: &str| {
            (
                Reason::Internal,
                format!("cannot request {}: invalid {what}", display_url(url)),
            )
        };
        let target = match route {
            Route::Direct => url[url::Position::BeforePath..url::Position::AfterQuery].to_string(),
            Route::Forward => {
                let mut absolute = url.clone();
                let _ = absolute.set_username("");
                let _ = absolute.set_password(None);
                absolute[..url::Position::AfterQuery].to_string()
            }
        };
        let mut request = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = target.parse().map_err(|_| internal("path"))?;

        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        };
        let same_origin = url.origin() == self.url.origin();
        let headers = request.headers_mut();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&host).map_err(|_| internal("host"))?,
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        for (name, value) in &self.headers {
            if same_origin || !is_origin_bound(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let (true, Some(auth)) = (same_origin, &self.authorization) {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let proxy_auth = self.proxy.as_ref().and_then(|p| p.authorization());
        if let (Route::Forward, Some(auth)) = (route, proxy_auth) {
            let mut value = HeaderValue::from_str(auth).map_err(|_| internal("proxy_url"))?;
            value.set_sensitive(true);
            headers.insert(header::PROXY_AUTHORIZATION, value);
        }
        Ok(request)
    }
}

/// Request headers that carry credentials or name the server: not sent to
/// another origin after a redirect.
fn is_origin_bound(name: &HeaderName) -> bool {
    name == header::HOST || is_credential_header(name)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Whether a redirect is followed with a GET without body: a 303 (a HEAD
/// stays a HEAD), and a 301 or 302 answering a POST.
fn redirects_to_get(status: StatusCode, method: &Method) -> bool {
    status == StatusCode::SEE_OTHER && *method != Method::HEAD
        || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
            && *method == Method::POST
}

/// A URL for a message: without user name, password and fragment.
pub(super) fn display_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_strips_userinfo() {
        let url = Url::parse("https://u:p@h:8443/x?q#frag").unwrap();
        assert_eq!(display_url(&url), "https://h:8443/x?q");
    }
}
