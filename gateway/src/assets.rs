//! Static files served on the public listener, embedded in the binary.

/// `GET /`: the demo page.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
