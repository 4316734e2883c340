//! Secrets in the configuration (DESIGN §7): written literally, as `env:NAME` (read from
//! the environment) or as `file:PATH` (a mounted Kubernetes secret, say). A secret never
//! appears in logs, errors, metrics or the API: its `Debug` and `Display` say `***`.

use std::fmt;

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Reads the value `written` refers to; the error names where it looked, never the value.
    pub fn resolve(written: &str) -> Result<Secret, String> {
        if let Some(name) = written.strip_prefix("env:") {
            return std::env::var(name)
                .map(Secret)
                .map_err(|_| format!("the environment variable {name} is not set"));
        }
        if let Some(path) = written.strip_prefix("file:") {
            return std::fs::read_to_string(path)
                .map(|text| Secret(text.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|error| format!("cannot read {path}: {error}"));
        }
        Ok(Secret(written.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_environment_and_file_secrets_are_read_and_never_shown() {
        assert_eq!(Secret::resolve("s3cret").unwrap().expose(), "s3cret");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let secret = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(secret.expose(), "from-a-file");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        let missing = Secret::resolve("env:LIM_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert_eq!(
            missing,
            "the environment variable LIM_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }
}
