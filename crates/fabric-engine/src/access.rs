//! Who is calling: the bearer tokens of `api.token` and `api.tokens`, resolved to a named
//! principal with a role. The HTTP API and the web console share it, so a token means the
//! same on both and names the actor in the audit log.

use fabric_core::config::TokenRole;

/// A named bearer token and what it may do.
#[derive(Clone)]
pub struct Credential {
    pub name: String,
    pub secret: String,
    pub role: TokenRole,
}

/// A caller whose token was recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (`api` for the single admin token of `api.token`).
    pub name: String,
    pub role: TokenRole,
}

impl Principal {
    /// May change things in the console (retry, pause, silence…).
    pub fn is_admin(&self) -> bool {
        self.role == TokenRole::Admin
    }

    pub fn role_name(&self) -> &'static str {
        role_name(self.role)
    }
}

pub fn role_name(role: TokenRole) -> &'static str {
    match role {
        TokenRole::Admin => "admin",
        TokenRole::Read => "read",
        TokenRole::Worker => "worker",
    }
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Access {
    /// `api.token`: an admin token named `api`.
    pub admin_token: Option<String>,
    /// `api.tokens`, their secrets read.
    pub tokens: Vec<Credential>,
}

impl Access {
    pub fn new(admin_token: Option<String>, tokens: Vec<Credential>) -> Self {
        Self {
            admin_token,
            tokens,
        }
    }

    /// Whether any token is configured (with none, nothing may change anything).
    pub fn configured(&self) -> bool {
        self.admin_token.is_some() || !self.tokens.is_empty()
    }

    /// The principal whose secret `given` is; every configured secret is compared in full.
    pub fn resolve(&self, given: &str) -> Option<Principal> {
        let admin = self
            .admin_token
            .as_deref()
            .filter(|t| constant_time_eq(given.as_bytes(), t.as_bytes()))
            .map(|_| Principal {
                name: "api".into(),
                role: TokenRole::Admin,
            });
        let named = self
            .tokens
            .iter()
            .find(|c| constant_time_eq(given.as_bytes(), c.secret.as_bytes()))
            .map(|c| Principal {
                name: c.name.clone(),
                role: c.role,
            });
        admin.or(named)
    }
}

/// The credentials of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 7235).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_an_exact_match() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn tokens_resolve_to_their_name_and_role() {
        let access = Access::new(
            Some("root".into()),
            vec![Credential {
                name: "viewer".into(),
                secret: "look".into(),
                role: TokenRole::Read,
            }],
        );
        assert_eq!(access.resolve("root").unwrap().name, "api");
        let viewer = access.resolve("look").unwrap();
        assert_eq!((viewer.name.as_str(), viewer.is_admin()), ("viewer", false));
        assert!(access.resolve("nope").is_none());
        assert!(!Access::default().configured());
    }
}
