//! `pushctl token`: mint an HS256 connect token for development and tests.

use anyhow::{anyhow, bail, Result};
use gateway::auth::Claims;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

/// Arguments of `pushctl token`.
#[derive(clap::Args)]
pub struct Args {
    /// HS256 secret shared with the gateways' --jwt-secret.
    #[arg(long, env = "PUSHFLEET_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// User id (`sub`); the user may always subscribe to `user:<sub>`.
    #[arg(long)]
    sub: String,
    /// Channels the connection may subscribe to: names or prefixes ending in `*`.
    #[arg(long, value_delimiter = ',', default_value = "")]
    channels: Vec<String>,
    /// Lifetime: seconds, or a number with s, m, h or d (e.g. 90s, 15m, 1h, 7d).
    #[arg(long, default_value = "1h")]
    ttl: String,
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d` into seconds.
pub fn parse_ttl(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("--ttl {s:?}: expected a number with s, m, h or d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        other => bail!("--ttl {s:?}: unknown unit {other:?} (use s, m, h or d)"),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| anyhow!("--ttl {s:?} is out of range"))
}

pub fn mint(args: &Args, now: u64) -> Result<String> {
    if args.secret.len() < 16 {
        bail!("--secret must be at least 16 bytes (the gateways refuse shorter ones)");
    }
    let claims = Claims {
        sub: args.sub.clone(),
        exp: now
            .checked_add(parse_ttl(&args.ttl)?)
            .ok_or_else(|| anyhow!("--ttl {:?} is out of range", args.ttl))?,
        nbf: None,
        iat: Some(now),
        channels: args
            .channels
            .iter()
            .filter(|c| !c.is_empty())
            .cloned()
            .collect(),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(args.secret.as_bytes()),
    )?)
}

pub fn run(args: Args) -> Result<()> {
    let now = gateway::wire::now_unix_ms() / 1000;
    println!("{}", mint(&args, now)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("15m").unwrap(), 900);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("7d").unwrap(), 604_800);
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0").is_err());
    }

    #[test]
    fn a_ttl_past_the_end_of_time_is_refused() {
        let args = Args {
            secret: "dev-secret-0123456789".into(),
            sub: "alice".into(),
            channels: vec![],
            ttl: "18446744073709551615".into(),
        };
        // It overflowed `now + ttl`: a panic in a debug build, a token already expired
        // (wrapped) in a release one.
        let e = mint(&args, 1_700_000_000).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn minted_token_verifies_at_the_gateway() {
        let args = Args {
            secret: "dev-secret-0123456789".into(),
            sub: "alice".into(),
            channels: vec!["news".into(), "room:*".into()],
            ttl: "1h".into(),
        };
        let token = mint(&args, gateway::wire::now_unix_ms() / 1000).unwrap();
        let auth =
            gateway::auth::Authenticator::from_config(true, Some(&args.secret), None).unwrap();
        let id = auth.verify(Some(&token)).unwrap();
        assert!(id.may_subscribe("room:7") && id.may_subscribe("user:alice"));
        assert!(!id.may_subscribe("sports"));
    }
}
