//! The browser-test plumbing itself, in headless Chromium (tests/support/browser.rs):
//! a tiny page served here under a strict Content-Security-Policy, with the vendored
//! htmx. The page's title, the CSP refusing its inline script, htmx's `hx-get` swap,
//! a screenshot; and sessions on the one shared chromedriver keeping their own cookies.
//! Needs Chromium and chromedriver: `make browser-deps`.

mod support;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::browser::{
    Browser, console_errors, find, js, screenshot_in, screenshots_dir, text_of, wait_for,
};

const CSP: &str = "default-src 'self'; script-src 'self'; frame-ancestors 'none'";
const HTMX: &str = include_str!("../src/console/assets/htmx-2.0.4.min.js");
/// Text from outside (a tenant name, say) that would run script if not escaped.
const UNTRUSTED: &str = r#"<img src=x onerror="window.pwned='img';document.title='pwned'">"#;
const WAIT: Duration = Duration::from_secs(10);
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page() -> String {
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="htmx-config" content='{{"includeIndicatorStyles":false}}'>
<title>Browser smoke</title>
<script src="/assets/htmx.js"></script>
<script>window.pwned = "inline"; document.title = "pwned";</script>
</head>
<body>
<h1>Browser smoke</h1>
<p id="untrusted">{untrusted}</p>
<button id="load" hx-get="/fragment" hx-target="#slot" hx-swap="innerHTML">Load</button>
<div id="slot"></div>
</body>
</html>
"##,
        untrusted = escape_html(UNTRUSTED)
    )
}

/// The test's web server on a loopback port: every answer carries the CSP, but for
/// `/no-csp` (the same page without it, the control that shows the CSP is what stops
/// the inline script).
async fn serve() -> String {
    let app = Router::new()
        .route("/", get(|| async { Html(page()) }))
        .route(
            "/assets/htmx.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    HTMX,
                )
            }),
        )
        .route(
            "/fragment",
            get(|headers: HeaderMap| async move {
                // htmx marks its requests; a plain navigation here would not be.
                let from_htmx = headers.get("hx-request").is_some_and(|v| v == "true");
                Html(format!(
                    r#"<p id="swapped">Swapped in by htmx (HX-Request: {from_htmx})</p>"#
                ))
            }),
        )
        // Sets the cookie `who` to ?v=, for the session-isolation test.
        .route(
            "/set",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let v = q.get("v").cloned().unwrap_or_default();
                let cookie = HeaderValue::from_str(&format!("who={v}; Path=/; SameSite=Strict"))
                    .expect("cookie");
                ([(header::SET_COOKIE, cookie)], Html("<p id=set>set</p>"))
            }),
        )
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                let cookie = headers
                    .get(header::COOKIE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                Html(format!(
                    "<p id=who>{}</p>",
                    escape_html(if cookie.is_empty() { "(none)" } else { &cookie })
                ))
            }),
        )
        // No favicon: an empty answer rather than a 404 in the console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                response.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                );
                response.into_response()
            },
        ))
        .merge(Router::new().route("/no-csp", get(|| async { Html(page()) })));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    base
}

#[tokio::test]
async fn page_under_strict_csp_blocks_inline_script_and_runs_vendored_htmx() {
    let started = Instant::now();
    let base = serve().await;
    let client = Browser::session().await;
    client
        .goto(&format!("{base}/"))
        .await
        .expect("open the page");

    // The inline script did not run: it would have renamed the page and set pwned.
    assert_eq!(client.title().await.expect("title"), "Browser smoke");
    let viewport = js(&client, "return [window.innerWidth, window.innerHeight]").await;
    assert_eq!(
        viewport[0],
        json!(1280),
        "--window-size=1280,900: {viewport}"
    );
    assert_eq!(
        js(&client, "return typeof window.pwned").await,
        json!("undefined")
    );
    // The untrusted text is shown as text, not turned into an element.
    assert_eq!(text_of(&client, "#untrusted").await, UNTRUSTED);
    assert_eq!(
        js(&client, "return document.querySelectorAll('img').length").await,
        json!(0)
    );

    // The vendored htmx loaded (from 'self') and its hx-get swap works.
    assert_eq!(
        js(
            &client,
            "return typeof htmx === 'undefined' ? null : htmx.version"
        )
        .await,
        json!("2.0.4")
    );
    assert!(
        client
            .find(fantoccini::Locator::Css("#swapped"))
            .await
            .is_err(),
        "nothing is swapped in before the click"
    );
    find(&client, "#load")
        .await
        .click()
        .await
        .expect("click Load");
    wait_for(&client, "#slot > #swapped", WAIT).await;
    assert_eq!(
        text_of(&client, "#swapped").await,
        "Swapped in by htmx (HX-Request: true)"
    );

    // The browser console: Chromium's report of the CSP refusing the inline script, and
    // no other error (htmx's own inline <style> is off, see src/console/assets/README.md;
    // the favicon is answered).
    let errors = console_errors(&client).await;
    assert!(
        errors.len() == 1
            && errors[0].contains(
                "Executing inline script violates the following Content Security Policy directive"
            )
            && errors[0].contains("The action has been blocked"),
        "one error, the CSP's refusal of the inline script: {errors:#?}"
    );

    // A screenshot, to a temporary folder: the smoke page is not for the docs.
    let shots = tempfile::tempdir().expect("temp dir");
    let png = screenshot_in(&client, shots.path(), "smoke").await;
    let bytes = std::fs::read(&png).expect("read the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        png.display()
    );
    assert!(bytes.len() > 1000, "a real picture, {} bytes", bytes.len());
    assert!(!screenshots_dir().join("smoke.png").exists());

    // The control: the same page without the CSP runs its inline script (so the
    // checks above would catch a missing or weakened policy); the untrusted text is
    // still only text, escaping is what keeps it so.
    client
        .goto(&format!("{base}/no-csp"))
        .await
        .expect("open the page without CSP");
    assert_eq!(client.title().await.expect("title"), "pwned");
    assert_eq!(js(&client, "return window.pwned").await, json!("inline"));
    assert_eq!(text_of(&client, "#untrusted").await, UNTRUSTED);

    client.close().await.expect("close the session");
    eprintln!("smoke test: {:?}", started.elapsed());
}

#[tokio::test]
async fn sessions_on_the_shared_chromedriver_keep_their_own_cookies() {
    let base = serve().await;
    // Two sessions at once, on the one chromedriver of this test binary (the other
    // test's session runs beside them).
    let (a, b) = tokio::join!(Browser::session(), Browser::session());
    let id_a = a.session_id().await.expect("session id");
    let id_b = b.session_id().await.expect("session id");
    assert!(id_a.is_some() && id_a != id_b, "{id_a:?} vs {id_b:?}");

    for client in [&a, &b] {
        client.goto(&format!("{base}/whoami")).await.expect("open");
        assert_eq!(text_of(client, "#who").await, "(none)", "a fresh profile");
    }
    // Cookies are per host, not per port: shared profiles would see each other's.
    a.goto(&format!("{base}/set?v=a")).await.expect("open");
    b.goto(&format!("{base}/set?v=b")).await.expect("open");
    for (client, who) in [(&a, "a"), (&b, "b")] {
        client.goto(&format!("{base}/whoami")).await.expect("open");
        assert_eq!(text_of(client, "#who").await, format!("who={who}"));
    }
    // The console helper reads this session's console, and only this one's.
    js(&a, "console.error('only in a'); return null").await;
    let errors_a = console_errors(&a).await;
    assert!(
        errors_a.len() == 1 && errors_a[0].ends_with(r#""only in a""#),
        "{errors_a:#?}"
    );
    assert_eq!(console_errors(&b).await, Vec::<String>::new());
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}
