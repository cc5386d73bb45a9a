//! Connect tokens and channel permissions (DESIGN §4.7).
//!
//! With `--auth jwt` every connection presents `?token=<JWT>`: HS256 with `--jwt-secret`,
//! or RS256/ES256 with `--jwt-public-key` (the algorithm follows the key, and only that
//! one is accepted, so `alg: none` and algorithm confusion fail). `exp` is required and,
//! like `nbf`, checked with a 5 s leeway. Claims:
//!
//! - `sub`: the user id;
//! - `channels`: names, or prefixes ending in `*`, the connection may subscribe to.
//!
//! The personal channel `user:<sub>` is always allowed to its own user and to no one else,
//! whatever the patterns say. With `--auth none` every channel is open (development, or a
//! gateway behind a trusted front end).

use std::path::Path;

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Leeway for `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Prefix of personal channels.
pub const PERSONAL_PREFIX: &str = "user:";

/// The claims Pushfleet reads; other claims are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Who is connected and what they may subscribe to.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// `--auth none`: everything is allowed.
    Anonymous,
    User {
        sub: String,
        patterns: Vec<String>,
        /// Unix seconds after which the connection is closed (1008).
        expires_at: u64,
    },
}

impl Identity {
    /// Whether this identity may subscribe to `channel` (already a valid name).
    pub fn may_subscribe(&self, channel: &str) -> bool {
        match self {
            Identity::Anonymous => true,
            Identity::User { sub, patterns, .. } => {
                if let Some(owner) = channel.strip_prefix(PERSONAL_PREFIX) {
                    return owner == sub;
                }
                patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => channel.starts_with(prefix),
                    None => p == channel,
                })
            }
        }
    }

    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Identity::Anonymous => None,
            Identity::User { expires_at, .. } => Some(*expires_at),
        }
    }
}

/// Why a token was refused. Clients only ever see `unauthorized`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("bad token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// Why the verifier could not be built (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("--auth jwt needs --jwt-secret or --jwt-public-key (env PUSHFLEET_JWT_SECRET / PUSHFLEET_JWT_PUBLIC_KEY)")]
    NoKey,
    #[error("give only one of --jwt-secret and --jwt-public-key")]
    TwoKeys,
    #[error("cannot read --jwt-public-key (env PUSHFLEET_JWT_PUBLIC_KEY) {0}: {1}")]
    Read(String, std::io::Error),
    #[error("--jwt-public-key (env PUSHFLEET_JWT_PUBLIC_KEY) {0} is not an RSA or EC (P-256) public key in PEM")]
    BadKey(String),
}

/// Verifies connect tokens.
pub enum Authenticator {
    None,
    Jwt {
        key: Box<DecodingKey>,
        validation: Box<Validation>,
    },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authenticator::None => f.write_str("Authenticator::None"),
            Authenticator::Jwt { validation, .. } => {
                write!(f, "Authenticator::Jwt({:?})", validation.algorithms)
            }
        }
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

impl Authenticator {
    /// From the configuration: `jwt` with exactly one key source.
    pub fn from_config(
        jwt: bool,
        secret: Option<&str>,
        public_key: Option<&Path>,
    ) -> Result<Authenticator, AuthSetupError> {
        if !jwt {
            return Ok(Authenticator::None);
        }
        match (secret, public_key) {
            (None, None) => Err(AuthSetupError::NoKey),
            (Some(_), Some(_)) => Err(AuthSetupError::TwoKeys),
            (Some(s), None) => Ok(Authenticator::Jwt {
                key: Box::new(DecodingKey::from_secret(s.as_bytes())),
                validation: Box::new(validation(Algorithm::HS256)),
            }),
            (None, Some(path)) => {
                let shown = path.display().to_string();
                let pem =
                    std::fs::read(path).map_err(|e| AuthSetupError::Read(shown.clone(), e))?;
                let (key, alg) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    (k, Algorithm::RS256)
                } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    (k, Algorithm::ES256)
                } else {
                    return Err(AuthSetupError::BadKey(shown));
                };
                Ok(Authenticator::Jwt {
                    key: Box::new(key),
                    validation: Box::new(validation(alg)),
                })
            }
        }
    }

    /// Checks a connect token.
    pub fn verify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match self {
            Authenticator::None => Ok(Identity::Anonymous),
            Authenticator::Jwt { key, validation } => {
                let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
                let data = decode::<Claims>(token, key, validation)?;
                let c = data.claims;
                Ok(Identity::User {
                    sub: c.sub,
                    patterns: c.channels,
                    expires_at: c.exp,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "test-secret-0123456789abcdef";

    fn now() -> u64 {
        crate::wire::now_unix_ms() / 1000
    }

    fn token(claims: &Claims, alg: Algorithm, secret: &str) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp: (now() as i64 + exp_in) as u64,
            nbf: None,
            iat: None,
            channels: vec!["news".into(), "room:*".into(), "user:*".into()],
        }
    }

    fn hs() -> Authenticator {
        Authenticator::from_config(true, Some(SECRET), None).unwrap()
    }

    #[test]
    fn good_token_and_permissions() {
        let id = hs()
            .verify(Some(&token(&claims(60), Algorithm::HS256, SECRET)))
            .unwrap();
        assert!(id.may_subscribe("news"));
        assert!(id.may_subscribe("room:1"));
        assert!(!id.may_subscribe("room"));
        assert!(!id.may_subscribe("newsroom"));
        assert!(id.may_subscribe("user:alice"));
        assert!(
            !id.may_subscribe("user:bob"),
            "user:* never grants others' channels"
        );
        assert!(Identity::Anonymous.may_subscribe("user:bob"));
    }

    #[test]
    fn bad_tokens() {
        let a = hs();
        assert!(matches!(a.verify(None), Err(AuthError::Missing)));
        assert!(a.verify(Some("")).is_err());
        assert!(a.verify(Some("not.a.jwt")).is_err());
        // Expired beyond the leeway.
        assert!(a
            .verify(Some(&token(&claims(-60), Algorithm::HS256, SECRET)))
            .is_err());
        // Within the leeway is fine.
        assert!(a
            .verify(Some(&token(&claims(-2), Algorithm::HS256, SECRET)))
            .is_ok());
        // Not yet valid.
        let mut c = claims(600);
        c.nbf = Some(now() + 300);
        assert!(a
            .verify(Some(&token(&c, Algorithm::HS256, SECRET)))
            .is_err());
        // Wrong secret, and another HMAC algorithm than the one configured.
        assert!(a
            .verify(Some(&token(
                &claims(60),
                Algorithm::HS256,
                "other-secret-xxxxxxxx"
            )))
            .is_err());
        assert!(a
            .verify(Some(&token(&claims(60), Algorithm::HS384, SECRET)))
            .is_err());
        // alg: none, hand-made.
        let b64 = |part: &str| URL_SAFE_NO_PAD.encode(part);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&serde_json::to_string(&claims(60)).unwrap())
        );
        assert!(a.verify(Some(&none)).is_err());
        // Missing exp.
        let no_exp = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64(r#"{"sub":"alice"}"#)
        );
        assert!(a.verify(Some(&no_exp)).is_err());
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn public_keys_pick_their_algorithm_and_refuse_confusion() {
        for (public, private, alg) in [
            (
                "es256-public.pem",
                "es256-private.pk8.pem",
                Algorithm::ES256,
            ),
            ("rs256-public.pem", "rs256-private.pem", Algorithm::RS256),
        ] {
            let a = Authenticator::from_config(true, None, Some(&fixture(public))).unwrap();
            let pem = std::fs::read(fixture(private)).unwrap();
            let key = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
                _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
            };
            let good = encode(&Header::new(alg), &claims(60), &key).unwrap();
            assert!(a.verify(Some(&good)).is_ok(), "{alg:?}");
            // Algorithm confusion: an HMAC token keyed with the public key's bytes.
            let public_pem = std::fs::read_to_string(fixture(public)).unwrap();
            let forged = token(&claims(60), Algorithm::HS256, &public_pem);
            assert!(a.verify(Some(&forged)).is_err(), "{alg:?} accepted HS256");
        }
        assert!(matches!(
            Authenticator::from_config(true, None, Some(&fixture("README.md"))),
            Err(AuthSetupError::BadKey(_))
        ));
    }

    #[test]
    fn setup_errors() {
        assert!(matches!(
            Authenticator::from_config(true, None, None),
            Err(AuthSetupError::NoKey)
        ));
        assert!(matches!(
            Authenticator::from_config(true, Some(SECRET), Some(Path::new("/x"))),
            Err(AuthSetupError::TwoKeys)
        ));
        assert!(matches!(
            Authenticator::from_config(true, None, Some(Path::new("/nonexistent.pem"))),
            Err(AuthSetupError::Read(..))
        ));
        assert!(matches!(
            Authenticator::from_config(false, None, None),
            Ok(Authenticator::None)
        ));
    }
}
