//! Password hashing with argon2id and OWASP's parameters (19 MiB, 2 passes,
//! 1 lane), on threads of its own so the async workers keep serving.
//!
//! Those threads run as background work (SCHED_BATCH, nice 19): a hash takes about 15 ms
//! of CPU, and a burst of sign-ins would otherwise take every core from the
//! requests around it (a cached page's p99 went from 1.4 ms to 5.6 ms while
//! sign-ins saturated the hashing). Below them, the hashes get whatever CPU
//! the requests leave, which under a sign-in burst alone is all of it.
//!
//! Each hash needs 19 MiB of working memory. Allocating and freeing it per
//! hash made glibc keep the freed blocks (its mmap threshold grows past
//! 19 MiB after the first frees): RSS grew to 750 MiB under a sign-in load
//! (docs/performance.md). So the memory is kept instead: one buffer per
//! permit of the bound on concurrent hashes, allocated the first time it is
//! needed and reused by every hash after, which bounds it at
//! `permits × 19 MiB` and saves the allocation and its page faults.

use std::sync::{Arc, Mutex, OnceLock, mpsc};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use tokio::sync::Semaphore;

use crate::UserError;
use crate::domain::Password;

/// Hashes and verifies passwords. Clones share one limit on concurrent
/// hashes (each takes 19 MiB, and a burst of logins must not exhaust
/// memory) and the memory those hashes work in.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// The hashing threads (one per permit), started with the first hash.
    threads: Arc<OnceLock<mpsc::Sender<Job>>>,
    thread_count: usize,
    /// Working memory not in use by a hash right now; never more buffers
    /// than permits, since a buffer is only taken while holding one.
    memory: Arc<Mutex<Vec<Memory>>>,
}

/// One hash's working memory (`block_count` 1 KiB blocks).
type Memory = Box<[Block]>;

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

impl Default for Hasher {
    fn default() -> Self {
        // Hashing is all CPU: one hash per core uses every core, and more at
        // once would only share them (the same rate, each slower) while each
        // held 19 MiB more.
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::with_permits(cores)
    }
}

fn params() -> Result<Params, UserError> {
    Params::new(19 * 1024, 2, 1, None).map_err(hashing)
}

fn hashing(error: impl std::fmt::Display) -> UserError {
    UserError::Hashing(error.to_string())
}

fn new_memory(blocks: usize) -> Memory {
    vec![Block::default(); blocks].into_boxed_slice()
}

impl Hasher {
    /// A hasher running at most `permits` hashes at once.
    pub fn with_permits(permits: usize) -> Self {
        let permits = permits.max(1);
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            threads: Arc::new(OnceLock::new()),
            thread_count: permits,
            memory: Arc::new(Mutex::new(Vec::with_capacity(permits))),
        }
    }

    pub async fn hash(&self, password: &Password) -> Result<String, UserError> {
        let password = password.clone();
        self.run(move |memory| hash_into(memory, password.expose().as_bytes())).await
    }

    /// True when `password` matches `hash`. With no hash (unknown account) it
    /// checks against a fixed one, so the answer takes as long either way.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, UserError> {
        let password = password.to_owned();
        self.run(move |memory| {
            let known = hash.is_some();
            let hash = match hash {
                Some(hash) => hash,
                None => decoy_hash(memory)?.to_owned(),
            };
            Ok(known && verify_with(memory, password.as_bytes(), &hash))
        })
        .await
    }

    /// Runs `work` on a hashing thread, holding a permit and a buffer of
    /// working memory (a kept one, or a new one the first times). The permit
    /// goes with the work, so a caller that gives up does not free its place
    /// before the hash it started ends.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T, UserError> + Send + 'static,
    ) -> Result<T, UserError> {
        let permit = self.permits.clone().acquire_owned().await.map_err(hashing)?;
        let threads = self.threads()?;
        let kept_memory = self.memory.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let result = (|| {
                let kept = kept_memory.lock().map_err(hashing)?.pop();
                let mut memory = match kept {
                    Some(memory) => memory,
                    None => new_memory(params()?.block_count()),
                };
                let result = work(&mut memory);
                // Back for the next hash before the permit goes (a panicked
                // hash loses its buffer; the next one makes another).
                kept_memory.lock().map_err(hashing)?.push(memory);
                result
            })();
            // The caller may have gone: nobody to tell.
            let _ = answer.send(result);
        });
        threads.send(job).map_err(hashing)?;
        answered.await.map_err(hashing)?
    }

    /// The queue of the hashing threads, started the first time (one per
    /// permit; an idle shop has none).
    fn threads(&self) -> Result<&mpsc::Sender<Job>, UserError> {
        if let Some(sender) = self.threads.get() {
            return Ok(sender);
        }
        let (sender, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for number in 0..self.thread_count {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{number}"))
                .spawn(move || hashing_thread(&jobs))
                .map_err(hashing)?;
        }
        // Two first hashes at once may both start threads: the loser's
        // sender is dropped here and its threads end.
        Ok(self.threads.get_or_init(|| sender))
    }

    /// Buffers of working memory kept for the next hashes.
    pub fn kept_buffers(&self) -> usize {
        self.memory.lock().map_or(0, |memory| memory.len())
    }
}

/// A hashing thread: lowers its priority, then runs jobs until every
/// `Hasher` sharing it is gone. A panicking job costs its hash, not the thread.
fn hashing_thread(jobs: &Mutex<mpsc::Receiver<Job>>) {
    if let Err(error) = lower_priority() {
        tracing::warn!(%error, "password hashing runs at the requests' priority");
    }
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hash panicked");
        }
    }
}

/// Linux: `SCHED_BATCH` at the lowest niceness (19), the scheduler's class
/// for background CPU work: request threads win every core they wake up
/// wanting. Elsewhere: the lowest priority of the normal policy.
fn lower_priority() -> Result<(), thread_priority::Error> {
    use thread_priority::{ThreadPriority, ThreadSchedulePolicy};
    #[cfg(target_os = "linux")]
    let policy = ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Batch);
    #[cfg(not(target_os = "linux"))]
    let policy = thread_priority::thread_schedule_policy()?;
    thread_priority::set_thread_priority_and_policy(thread_priority::thread_native_id(), ThreadPriority::Min, policy)
}

/// A new hash of `password` with a fresh salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), made in `memory`:
/// the same string `argon2`'s `PasswordHasher` makes.
fn hash_into(memory: &mut [Block], password: &[u8]) -> Result<String, UserError> {
    let params = params()?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = password_hash::try_generate_salt().map_err(hashing)?;
    let mut output = [0_u8; Params::DEFAULT_OUTPUT_LEN];
    argon2.hash_password_into_with_memory(password, &salt, &mut output, memory).map_err(hashing)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(hashing)?,
        salt: Some(Salt::new(&salt).map_err(hashing)?),
        hash: Some(Output::new(&output).map_err(hashing)?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed with the
/// algorithm, version and parameters the string names (as `argon2`'s
/// `PasswordVerifier` does) and compared in constant time. A hash made with
/// more memory than `memory` holds gets a buffer of its own for this once.
fn verify_with(memory: &mut [Block], password: &[u8], hash: &str) -> bool {
    // A malformed or unsupported hash matches nothing, as before.
    matches(memory, password, hash).unwrap_or(false)
}

fn matches(memory: &mut [Block], password: &[u8], hash: &str) -> Result<bool, UserError> {
    let parsed = PasswordHash::new(hash).map_err(hashing)?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(hashing)?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(hashing)?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(hashing)?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut output = vec![0_u8; expected.len()];
    let salt: &[u8] = salt;
    if blocks <= memory.len() {
        argon2.hash_password_into_with_memory(password, salt, &mut output, memory).map_err(hashing)?;
    } else {
        argon2.hash_password_into_with_memory(password, salt, &mut output, new_memory(blocks)).map_err(hashing)?;
    }
    // `Output`'s equality is constant-time.
    Ok(Output::new(&output).map_err(hashing)? == *expected)
}

/// A hash of a random password, made once, to verify against when the email
/// is unknown.
fn decoy_hash(memory: &mut [Block]) -> Result<&'static str, UserError> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return Ok(hash);
    }
    // The salt's bytes double as an unguessable password.
    let password = password_hash::try_generate_salt().map_err(hashing)?;
    let hash = hash_into(memory, &password)?;
    Ok(DECOY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use password_hash::{PasswordHasher, PasswordVerifier};

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
        assert!(!hasher.verify("correct horse battery", Some("not a hash".into())).await?);
        Ok(())
    }

    /// Hashes stored before the memory was kept (made by argon2's own
    /// `PasswordHasher`) still verify, and the new ones verify with it.
    #[tokio::test]
    async fn hashes_made_before_and_after_verify_both_ways() -> Result<(), UserError> {
        let hasher = Hasher::with_permits(1);
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params()?);
        let before = argon2.hash_password(b"correct horse battery").map_err(hashing)?.to_string();
        assert!(hasher.verify("correct horse battery", Some(before.clone())).await?);
        assert!(!hasher.verify("correct horse batterY", Some(before.clone())).await?);
        let after = hasher.hash(&Password::parse("correct horse battery")?).await?;
        assert_eq!(after.len(), before.len(), "{after} against {before}");
        assert_eq!(after.rsplitn(3, '$').nth(2), before.rsplitn(3, '$').nth(2), "the same algorithm and parameters");
        let parsed = PasswordHash::new(&after).map_err(hashing)?;
        assert!(argon2.verify_password(b"correct horse battery", &parsed).is_ok());
        assert!(argon2.verify_password(b"wrong", &parsed).is_err());
        // Other parameters (an older, smaller or larger setting) still verify.
        for (m, t) in [(8 * 1024, 3), (24 * 1024, 1)] {
            let other = Params::new(m, t, 1, None).map_err(hashing)?;
            let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, other)
                .hash_password(b"correct horse battery")
                .map_err(hashing)?
                .to_string();
            assert!(hasher.verify("correct horse battery", Some(older.clone())).await?, "{older}");
            assert!(!hasher.verify("correct horse", Some(older)).await?);
        }
        Ok(())
    }

    /// One buffer per permit, made once and reused: many hashes, one at a
    /// time or two at once, never keep more than the permits allow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn working_memory_is_kept_and_reused() -> Result<(), UserError> {
        let hasher = Hasher::with_permits(2);
        assert_eq!(hasher.kept_buffers(), 0, "nothing is allocated before the first hash");
        let password = Password::parse("correct horse battery")?;
        let hash = hasher.hash(&password).await?;
        assert_eq!(hasher.kept_buffers(), 1);
        for _ in 0..3 {
            assert!(hasher.verify("correct horse battery", Some(hash.clone())).await?);
        }
        assert_eq!(hasher.kept_buffers(), 1, "one at a time, one buffer reused");
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (hasher, hash) = (hasher.clone(), hash.clone());
                tokio::spawn(async move { hasher.verify("correct horse battery", Some(hash)).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.map_err(hashing)??);
        }
        assert!(hasher.kept_buffers() <= 2, "at most one buffer per permit");
        Ok(())
    }

    /// Hashes run on threads of their own below the requests' priority
    /// (Linux: the thread's nice value, field 19 of its stat line).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_request_threads() -> Result<(), UserError> {
        /// This thread's nice value and scheduling policy (fields 19 and 41
        /// of its stat line; 3 is SCHED_BATCH).
        fn scheduling() -> Result<(i64, i64), UserError> {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").map_err(hashing)?;
            // Fields after the command name in parentheses start at field 3.
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
            let field = |number: usize| fields.get(number - 3).and_then(|value| value.parse().ok());
            field(19).zip(field(41)).ok_or_else(|| hashing(format!("no nice or policy in {stat}")))
        }
        let hasher = Hasher::with_permits(2);
        let (name, (hashing_nice, hashing_policy)) =
            hasher.run(|_| Ok((std::thread::current().name().map(str::to_owned), scheduling()?))).await?;
        assert_eq!(name.as_deref().map(|n| n.starts_with("password-hash-")), Some(true), "{name:?}");
        let (request_nice, request_policy) = scheduling()?;
        assert_eq!((hashing_nice, hashing_policy), (19, 3), "nice 19, SCHED_BATCH");
        assert_eq!(request_policy, 0, "requests stay SCHED_OTHER (nice {request_nice})");

        // One thread per permit: two hashes meet while both are running.
        let met = Arc::new((Mutex::new(0_usize), std::sync::Condvar::new()));
        let meet = |met: Arc<(Mutex<usize>, std::sync::Condvar)>| {
            move |_: &mut Memory| {
                let (count, changed) = &*met;
                let mut count = count.lock().map_err(hashing)?;
                *count += 1;
                changed.notify_all();
                let (count, _) = changed
                    .wait_timeout_while(count, std::time::Duration::from_secs(10), |count| *count < 2)
                    .map_err(hashing)?;
                Ok(*count >= 2)
            }
        };
        let (first, second) = tokio::join!(hasher.run(meet(met.clone())), hasher.run(meet(met.clone())));
        assert!(first? && second?, "both hashes ran at once");
        Ok(())
    }
}
