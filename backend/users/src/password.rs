//! Password hashing with argon2id and OWASP's parameters (19 MiB, 2 passes,
//! 1 lane), always on the blocking pool so the async workers keep serving.

use std::sync::{Arc, OnceLock};

use argon2::{Algorithm, Argon2, Params, Version};
use password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::UserError;
use crate::domain::Password;

/// Hashes and verifies passwords. Clones share one limit on concurrent
/// hashes: each takes 19 MiB, and a burst of logins must not exhaust memory.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self { permits: Arc::new(Semaphore::new(cores * 2)) }
    }
}

fn argon2() -> Result<Argon2<'static>, UserError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| UserError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl Hasher {
    pub async fn hash(&self, password: &Password) -> Result<String, UserError> {
        let password = password.clone();
        self.run(move || {
            argon2()?
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| UserError::Hashing(e.to_string()))
        })
        .await
    }

    /// True when `password` matches `hash`. With no hash (unknown account) it
    /// checks against a fixed one, so the answer takes as long either way.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, UserError> {
        let password = password.to_owned();
        self.run(move || {
            let argon2 = argon2()?;
            let known = hash.is_some();
            let hash = match hash {
                Some(hash) => hash,
                None => decoy_hash()?.to_owned(),
            };
            let matches = argon2.verify_password(password.as_bytes(), hash.as_str()).is_ok();
            Ok(known && matches)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, UserError> + Send + 'static,
    ) -> Result<T, UserError> {
        let _permit = self.permits.acquire().await.map_err(|e| UserError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| UserError::Hashing(e.to_string()))?
    }
}

/// A hash of a random password, made once, to verify against when the email
/// is unknown.
fn decoy_hash() -> Result<&'static str, UserError> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return Ok(hash);
    }
    let salt = password_hash::generate_salt();
    let hash = argon2()?
        .hash_password(&salt) // the salt's bytes double as an unguessable password
        .map_err(|e| UserError::Hashing(e.to_string()))?
        .to_string();
    Ok(DECOY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() -> Result<(), UserError> {
        let hasher = Hasher::default();
        let password = Password::parse("correct horse battery")?;
        let first = hasher.hash(&password).await?;
        let second = hasher.hash(&password).await?;
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(!first.contains("correct horse"));
        assert!(hasher.verify("correct horse battery", Some(first.clone())).await?);
        assert!(!hasher.verify("wrong horse battery", Some(first)).await?);
        assert!(!hasher.verify("correct horse battery", None).await?);
        Ok(())
    }
}
