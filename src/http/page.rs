//! The web page: HTML, stylesheet and script compiled into the binary (no CDN, no external
//! fonts). The page holds no data; its script fetches `/api/v1/streams` for the catalog and
//! redraws the dashboard every second from `/api/v1/stats` and `/api/v1/sessions`.
//!
//! With `api-read = "token"` the page reads the admin token from the URL fragment
//! (`/#token=...`, never sent to any server in a request line) and sends it as a bearer
//! token with its API calls.

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::StatusCode;

use super::server::{response, HttpResponse};

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    /// URL path.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

/// Every asset the page uses.
pub static ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/style.css"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "/assets/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
];

/// The asset at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Serves an asset. The content security policy allows only this origin's own script,
/// styles and API: nothing is loaded from elsewhere.
pub fn serve(asset: &'static Asset) -> HttpResponse {
    let mut r = response(
        StatusCode::OK,
        asset.content_type,
        Bytes::from_static(asset.body.as_bytes()),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_only_its_own_assets() {
        let html = find("/").unwrap().body;
        for a in &ASSETS[1..] {
            assert!(html.contains(a.path), "index.html uses {}", a.path);
        }
        for asset in &ASSETS {
            for remote in [
                "src=\"http",
                "href=\"http",
                "url(http",
                "@import",
                "fetch(\"http",
                "//cdn",
            ] {
                assert!(
                    !asset.body.contains(remote),
                    "{} loads nothing from elsewhere ({remote})",
                    asset.path
                );
            }
        }
        assert!(find("/nope").is_none());
    }
}
