//! Cross-site request forgery: every console POST must come from a console page.
//! Two independent checks: the browser's own statement of where the request comes
//! from (`Sec-Fetch-Site`, else `Origin` against `Host`), and a per-form token
//! only a console page knows.

use axum::http::HeaderMap;

/// Refuses a request the browser says comes from another site, or that carries
/// neither header (every browser that runs the console sends at least `Origin` on
/// a POST; a request without either is not from a console page).
pub fn check_origin(headers: &HeaderMap) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return if site.eq_ignore_ascii_case("same-origin") {
            Ok(())
        } else {
            Err(format!(
                "the browser says this form was sent from another site (Sec-Fetch-Site: {site}); open the console page again and submit from there"
            ))
        };
    }
    let Some(origin) = header("origin") else {
        return Err("the request carries neither an Origin nor a Sec-Fetch-Site header, so it cannot be shown to come from a console page; submit the form from the console in a browser".into());
    };
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .trim_end_matches('/');
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!(
            "this form was sent from {origin:?}, not from the console's own address; open the console page again and submit from there"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn same_origin_passes_and_cross_site_is_refused() {
        assert!(check_origin(&h(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_origin(&h(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_origin(&h(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(check_origin(&h(&[("sec-fetch-site", "none")])).is_err());
        let same = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(check_origin(&h(&same)).is_ok());
        let other = [
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(check_origin(&h(&other)).is_err());
        assert!(check_origin(&h(&[("origin", "null"), ("host", "a")])).is_err());
        assert!(check_origin(&h(&[("host", "127.0.0.1:8080")])).is_err());
        // Sec-Fetch-Site wins over a matching Origin.
        let both = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://a"),
            ("host", "a"),
        ];
        assert!(check_origin(&h(&both)).is_err());
    }
}
