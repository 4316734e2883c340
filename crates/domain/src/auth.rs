//! API keys as data (DESIGN §9): scopes, what each grants, and a key as the store keeps it
//! (a hash, never the key). Making and checking keys is the service's (`auth.rs`).

use chrono::{DateTime, Utc};

closed_vocabulary! {
    /// What a key may do: `ingest` events; `read` incidents, timelines, silences,
    /// schedules and jobs; `write` (act on incidents, comment, open them by hand, silence,
    /// retry jobs; reading included); `admin` everything (a reload too).
    Scope, "scope" {
        Ingest => "ingest",
        Read => "read",
        Write => "write",
        Admin => "admin",
    }
}

impl Scope {
    /// Whether a key with this scope may do what `needed` allows.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin || (self == Scope::Write && needed == Scope::Read)
    }
}

/// Whether any of `scopes` grants `needed`.
pub fn granted(scopes: &[Scope], needed: Scope) -> bool {
    scopes.iter().any(|scope| scope.grants(needed))
}

/// The longest key name.
pub const MAX_KEY_NAME_CHARS: usize = 64;

/// An API key as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Unique; letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// SHA-256 of the key, hex; the key itself is shown once, at creation, and kept nowhere.
    pub hash: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    /// When it was last accepted (kept up to date every few seconds, not at each use).
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key name as an operator writes it, or why it cannot be one.
pub fn key_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(format!("a key name has 1 to {MAX_KEY_NAME_CHARS} characters"));
    }
    if !name
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{}` is not a key name: use letters, digits, `-`, `_` and `.`",
            crate::text::excerpt(name)
        ));
    }
    Ok(name.to_owned())
}

/// Scopes written `ingest,read`; at least one.
pub fn scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let scope: Scope = part.parse().map_err(|error: crate::UnknownValue| error.to_string())?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err("name one scope or more: ingest, read, write, admin".into());
    }
    Ok(scopes)
}

/// Scopes as the store writes them, `ingest,read`.
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_includes_read_and_admin_everything() {
        assert!(Scope::Write.grants(Scope::Read));
        assert!(!Scope::Write.grants(Scope::Ingest));
        assert!(!Scope::Read.grants(Scope::Write));
        assert!(!Scope::Ingest.grants(Scope::Read));
        for needed in Scope::ALL {
            assert!(Scope::Admin.grants(*needed));
        }
        assert!(granted(&[Scope::Ingest, Scope::Read], Scope::Read));
    }

    #[test]
    fn names_and_scopes_are_checked() {
        assert_eq!(key_name(" ci-deploy ").unwrap(), "ci-deploy");
        assert!(key_name("").is_err());
        assert!(key_name("has space").is_err());
        assert_eq!(scopes("ingest, read,ingest").unwrap(), [Scope::Ingest, Scope::Read]);
        assert!(scopes("").is_err());
        assert!(scopes("root").unwrap_err().contains("root"));
        assert_eq!(scopes_text(&[Scope::Ingest, Scope::Read]), "ingest,read");
    }
}
