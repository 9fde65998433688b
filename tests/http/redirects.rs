//! The `http` check follows, limits and refuses redirects as configured, and
//! keeps credentials on their origin.

use super::*;

#[tokio::test]
async fn redirects_are_followed() {
    let server = serve(|r| match r.path.as_str() {
        "/old" => redirect(301, "/moved"),
        "/moved" => redirect(302, "./final"),
        _ => reply(200, "here"),
    })
    .await;
    let check = build(&format!("kind: http\nurl: {}", server.url("http", "/old")));

    let samples = run(&*check).await.expect("the redirects lead to a 200");

    assert_eq!(value(&samples, "http_redirects", &[]), Some(2.0));
    assert_eq!(value(&samples, "http_status_code", &[]), Some(200.0));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/old", "/moved", "/final"]);
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get() {
    let server = serve(|r| match r.path.as_str() {
        "/submit" => redirect(303, "/result"),
        _ => reply(200, "done"),
    })
    .await;
    let check = build(&format!(
        "kind: http\nurl: {}\nmethod: POST\nbody: payload",
        server.url("http", "/submit")
    ));

    run(&*check).await.expect("the 303 is followed");

    let seen = server.requests();
    assert_eq!((seen[0].method.as_str(), seen[0].body.len()), ("POST", 7));
    assert_eq!((seen[1].method.as_str(), seen[1].body.len()), ("GET", 0));
}

#[tokio::test]
async fn too_many_redirects_fail() {
    let server = serve(|_| redirect(302, "/again")).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nmax_redirects: 3",
        server.url("http", "/again")
    ));

    let f = failure(run(&*check).await);

    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "too many redirects (more than 3)");
    assert_eq!(value(&f.samples, "http_redirects", &[]), Some(3.0));
    assert_eq!(value(&f.samples, "http_status_code", &[]), Some(302.0));
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn redirects_are_not_followed_when_disabled() {
    let server = serve(|_| redirect(302, "/elsewhere")).await;
    let url = server.url("http", "/");

    let strict = build(&format!("kind: http\nurl: {url}\nfollow_redirects: false"));
    let f = failure(run(&*strict).await);
    assert_eq!(f.reason, Reason::UnexpectedResponse);
    assert_eq!(f.message, "HTTP 302 Found (expected 2xx)");

    let accepting = build(&format!(
        "kind: http\nurl: {url}\nfollow_redirects: false\nvalid_status_codes: [3xx]"
    ));
    run(&*accepting).await.expect("3xx is listed");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_origin() {
    let other = serve(|_| reply(200, "other")).await;
    let target = other.url("http", "/landing");
    let first = serve(move |_| redirect(307, target.clone())).await;
    let check = build(&format!(
        "kind: http\nurl: {}\nbearer_token: s3cret\nheaders: {{X-Trace: abc}}",
        first.url("http", "/")
    ));

    run(&*check).await.expect("the redirect is followed");

    assert_eq!(
        first.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );
    let landed = &other.requests()[0];
    assert_eq!(landed.header("authorization"), None);
    assert_eq!(landed.header("x-trace"), Some("abc"));
    assert_eq!(landed.header("host"), Some(other.addr.to_string().as_str()));
}
