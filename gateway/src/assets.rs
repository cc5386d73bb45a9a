//! Static files served on the public listener, embedded in the binary.

/// `GET /client.js`: the browser client (the same file as the npm package in `clients/js`).
pub const CLIENT_JS: &str = include_str!("../../clients/js/pushfleet.js");

/// `GET /client.d.ts`: its TypeScript declarations.
pub const CLIENT_DTS: &str = include_str!("../../clients/js/pushfleet.d.ts");

/// `GET /`: the demo page; `{{PUBLISH_URL}}` is replaced with the publish endpoint.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The demo page, told where the internal listener's publish endpoint is.
pub fn index_html(internal: std::net::SocketAddr) -> String {
    let host = if internal.ip().is_unspecified() {
        format!("127.0.0.1:{}", internal.port())
    } else {
        internal.to_string()
    };
    INDEX_HTML.replace("{{INTERNAL}}", &host)
}
