//! URLs as error messages may show them: without the secrets they can carry.

/// `url` with the password of its `user:password@` (or the whole userinfo when it has no
/// `:`, where Redis URLs may hold a bare password) and the value of a `token` query
/// parameter (a connect token) replaced by `****`. Anything else is kept as given.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => format!("****@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("token", _)) => "token=****".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        for (given, shown) in [
            (
                "redis://:s3cret@10.0.0.1:6379/0",
                "redis://:****@10.0.0.1:6379/0",
            ),
            (
                "rediss://app:s3cret@redis:6380",
                "rediss://app:****@redis:6380",
            ),
            ("redis://s3cret@redis", "redis://****@redis"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "ws://gw:8080/ws?token=eyJ.s3cret.x&channels=a",
                "ws://gw:8080/ws?token=****&channels=a",
            ),
            ("ws://gw:8080/ws?channels=a", "ws://gw:8080/ws?channels=a"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(given), shown, "{given}");
        }
    }
}
