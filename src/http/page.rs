//! The web pages: HTML, stylesheets and scripts compiled into the binary (no CDN, no external
//! fonts). `/` is the viewer (the catalog, each stream playable in a `<video>` over WebRTC —
//! WHEP on this origin, `super::whep` — where the catalog gives a `whep_url`, else or on any
//! failure over HLS, with hls.js where the browser has Media Source Extensions; the page
//! shows which is in use); `/dashboard` is the operator
//! dashboard, which redraws every second from `/api/v1/stats` and `/api/v1/sessions`;
//! `/publish` goes live from the browser (camera, screen or a test pattern) over WHIP,
//! `super::whip`. The pages hold no data; their scripts fetch it from the API.
//!
//! With `api-read = "token"` the pages read the admin token from the URL fragment
//! (`/#token=...`, never sent to any server in a request line) and send it as a bearer
//! token with their API calls.
//!
//! hls.js version: 1.7.4 (npm, `scripts/update-hls-js.sh 1.7.4`)

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::StatusCode;

use super::server::{response, HttpResponse};

/// How long a browser may keep an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Revalidate every time (`no-cache`): pages and our own scripts change with the binary
    /// under the same path.
    Revalidate,
    /// Keep for a year (`immutable`): the path names the content's version.
    Immutable,
}

/// One file of the pages.
#[derive(Debug)]
pub struct Asset {
    /// URL path.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
    /// How long a browser may keep it.
    pub caching: Caching,
}

/// Where the viewer page loads hls.js from; the version in the path lets browsers keep it
/// for a year (`scripts/update-hls-js.sh` rewrites it here and in `index.html`).
pub const HLS_JS_PATH: &str = "/assets/hls-1.7.4.min.js";

const fn page(path: &'static str, content_type: &'static str, body: &'static str) -> Asset {
    Asset {
        path,
        content_type,
        body,
        caching: Caching::Revalidate,
    }
}

/// Every asset the pages use.
pub static ASSETS: [Asset; 11] = [
    page(
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    page(
        "/dashboard",
        "text/html; charset=utf-8",
        include_str!("assets/dashboard.html"),
    ),
    page(
        "/publish",
        "text/html; charset=utf-8",
        include_str!("assets/publish.html"),
    ),
    page(
        "/assets/publish.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/publish.js"),
    ),
    page(
        "/assets/viewer.css",
        "text/css; charset=utf-8",
        include_str!("assets/viewer.css"),
    ),
    page(
        "/assets/viewer.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/viewer.js"),
    ),
    page(
        "/assets/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    page(
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    page(
        "/assets/icon.svg",
        "image/svg+xml",
        include_str!("assets/icon.svg"),
    ),
    Asset {
        path: HLS_JS_PATH,
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/vendor/hls.min.js"),
        caching: Caching::Immutable,
    },
    page(
        "/assets/hls.js-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("assets/vendor/hls.js-LICENSE.txt"),
    ),
];

/// The asset at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Nothing but this origin's own script, styles, images and API.
const STRICT_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The content security policy (CSP Level 3) of `asset`, requested with `host` (the
/// validated `Host` name, see [`super::server::host_name`]).
///
/// Scripts, styles and images come only from this origin. The viewer page (`/`) also plays
/// HLS, which lives on another port of the same host (`--hls-listen`, any port the operator
/// picks): hls.js fetches playlists and segments (`connect-src`) and hands them to the
/// `<video>` as a Media Source `blob:` URL (`media-src blob:`); a browser's own HLS player
/// loads the playlist URL into the `<video>` directly (`media-src`). So the viewer allows
/// `http(s)://{host}:*`, the host the browser already reached this page by, on any port,
/// rather than a port from the configuration: the HLS listener may be bound to 0.0.0.0 or
/// sit behind a proxy, so the host and port the browser must use are not in our config,
/// while the API's `hls_url` is built from the same `Host` header. Other origins stay
/// blocked; an IPv6 literal host (which CSP's `host-source` grammar cannot express) gets
/// `'self'` only. No `worker-src`: the page runs hls.js without its worker.
pub fn content_security_policy(asset: &Asset, host: Option<&str>) -> String {
    let hls = match host {
        Some(h) if asset.path == "/" && !h.contains([':', '[']) => {
            format!(" http://{h}:* https://{h}:*")
        }
        _ => String::new(),
    };
    let media = if asset.path == "/" {
        format!(" media-src 'self' blob:{hls};")
    } else {
        String::new()
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'{hls};{media} base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Serves an asset requested with `host` (the validated `Host` name).
pub fn serve(asset: &'static Asset, host: Option<&str>) -> HttpResponse {
    let mut r = response(
        StatusCode::OK,
        asset.content_type,
        Bytes::from_static(asset.body.as_bytes()),
    );
    let csp = content_security_policy(asset, host);
    let h = r.headers_mut();
    // `host` passed `host_name`, so the policy is plain ASCII; were it not, the page gets
    // the strictest policy rather than none.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(STRICT_CSP)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(match asset.caching {
            Caching::Revalidate => "no-cache",
            Caching::Immutable => "public, max-age=31536000, immutable",
        }),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: [&str; 6] = [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "fetch(\"http",
        "//cdn",
    ];

    #[test]
    fn pages_reference_only_their_own_assets() {
        let viewer = find("/").unwrap().body;
        let dashboard = find("/dashboard").unwrap().body;
        for path in [
            "/assets/viewer.css",
            "/assets/viewer.js",
            "/assets/icon.svg",
            HLS_JS_PATH,
            "/assets/hls.js-LICENSE.txt",
        ] {
            assert!(viewer.contains(path), "index.html uses {path}");
        }
        for path in ["/assets/style.css", "/assets/app.js", "/assets/icon.svg"] {
            assert!(dashboard.contains(path), "dashboard.html uses {path}");
        }
        let publish = find("/publish").unwrap().body;
        for path in [
            "/assets/viewer.css",
            "/assets/publish.js",
            "/assets/icon.svg",
        ] {
            assert!(publish.contains(path), "publish.html uses {path}");
        }
        // Every asset but the pages is used by one of them.
        for a in ASSETS
            .iter()
            .filter(|a| !a.content_type.starts_with("text/html"))
        {
            assert!(
                viewer.contains(a.path) || dashboard.contains(a.path) || publish.contains(a.path),
                "{} is used",
                a.path
            );
        }
        // hls.js is third-party code (the CSP is what holds it to this origin); ours must not
        // load anything from elsewhere.
        for asset in ASSETS.iter().filter(|a| a.path != HLS_JS_PATH) {
            for remote in REMOTE {
                assert!(
                    !asset.body.contains(remote),
                    "{} loads nothing from elsewhere ({remote})",
                    asset.path
                );
            }
        }
        assert!(find("/nope").is_none());
        assert!(find("/assets/vendor/hls.min.js").is_none());
    }

    #[test]
    fn hls_js_is_the_pinned_build() {
        let js = find(HLS_JS_PATH).unwrap();
        assert_eq!(js.caching, Caching::Immutable);
        // The version in the path is the one the file carries.
        let version = HLS_JS_PATH
            .strip_prefix("/assets/hls-")
            .and_then(|v| v.strip_suffix(".min.js"))
            .unwrap();
        assert!(
            js.body.contains(&format!("\"{version}\"")),
            "hls.min.js is version {version}"
        );
        assert!(find("/assets/hls.js-LICENSE.txt")
            .unwrap()
            .body
            .contains("Apache License"));
    }

    #[test]
    fn only_the_viewer_may_reach_other_ports_of_its_host() {
        let viewer = find("/").unwrap();
        let csp = content_security_policy(viewer, Some("media.example"));
        assert!(csp.contains("connect-src 'self' http://media.example:* https://media.example:*;"));
        assert!(
            csp.contains("media-src 'self' blob: http://media.example:* https://media.example:*;")
        );
        assert!(csp.starts_with("default-src 'none'; script-src 'self';"));
        // No Host, or an IPv6 literal CSP cannot name: this origin only.
        for host in [None, Some("[::1]")] {
            let csp = content_security_policy(viewer, host);
            assert!(
                csp.contains("connect-src 'self'; media-src 'self' blob:;"),
                "{csp}"
            );
        }
        for path in ["/dashboard", "/assets/viewer.js", HLS_JS_PATH] {
            assert_eq!(
                content_security_policy(find(path).unwrap(), Some("media.example")),
                STRICT_CSP
            );
        }
        let r = serve(viewer, Some("127.0.0.1"));
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("http://127.0.0.1:*"));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let r = serve(find(HLS_JS_PATH).unwrap(), None);
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
    }
}
