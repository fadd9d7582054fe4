//! Password hashing with argon2id at the crate's defaults (OWASP's recommended
//! m=19 MiB, t=2, p=1), stored in PHC string form so parameters can be raised later
//! without invalidating existing hashes.
//!
//! Every hash and verification runs on a small pool of threads of its own (one per core,
//! at most four), the caller waiting for its turn. Each takes 19 MiB, and the allocator
//! keeps what a thread freed for that thread's later use: run on whichever of the many
//! blocking threads handled the request, a burst of logins left hundreds of MiB resident
//! for good (measured: 450 to 800 MiB after creating 1,000 accounts). On a few threads it
//! stays a few times 19 MiB, and a login storm cannot take every core from the rest of
//! the server either.

use crate::error::AuthError;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' queue, started on first use.
fn pool() -> &'static Mutex<SyncSender<Job>> {
    static POOL: OnceLock<Mutex<SyncSender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        // Bounded: callers past this many wait to submit, as they would for a thread.
        let (submit, jobs) = sync_channel::<Job>(threads * 64);
        let jobs: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(jobs));
        for n in 0..threads {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("conclave-argon2-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is only held to take a job, not while it runs.
                        let job = match jobs.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            // A panicking job loses its caller's answer (the caller then
                            // panics in turn), not this thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("a password hashing thread starts");
        }
        Mutex::new(submit)
    })
}

/// Runs `work` on a hashing thread and waits for its result.
fn on_hashing_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    let submit = match pool().lock() {
        Ok(submit) => submit.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    submit
        .send(job)
        .expect("the password hashing threads run for the life of the process");
    result
        .recv()
        .expect("a password hashing job always answers")
}

pub fn hash(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    on_hashing_thread(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| AuthError::Hashing(err.to_string()))
    })
}

/// Whether `password` matches the stored PHC `hash`. A malformed stored hash never matches.
pub fn verify(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    on_hashing_thread(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
}

/// Spends the same work as a real verification, so an unknown username takes as long
/// to refuse as a wrong password and response times do not reveal which accounts exist.
pub fn verify_against_nothing(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("conclave-timing-equalizer").unwrap_or_default());
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_runs_on_its_own_few_threads_whatever_calls_it() {
        let callers: Vec<_> = (0..12)
            .map(|n| {
                std::thread::spawn(move || {
                    let password = format!("password number {n}");
                    let stored = hash(&password).unwrap();
                    assert!(verify(&password, &stored));
                    assert!(!verify("another", &stored));
                    on_hashing_thread(|| std::thread::current().name().map(str::to_owned))
                })
            })
            .collect();
        let threads: std::collections::BTreeSet<String> = callers
            .into_iter()
            .map(|caller| caller.join().unwrap().unwrap())
            .collect();
        assert!(
            threads
                .iter()
                .all(|name| name.starts_with("conclave-argon2-")),
            "{threads:?}"
        );
        assert!(threads.len() <= 4, "{threads:?}");
        // A job that panics costs its caller the answer, not the pool.
        let caught = std::thread::spawn(|| on_hashing_thread(|| -> u8 { panic!("boom") })).join();
        assert!(caught.is_err());
        assert!(verify("x", &hash("x").unwrap()));
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery staple").unwrap();
        let b = hash("correct horse battery staple").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery staple", &a));
        assert!(!verify("correct horse battery stapl", &a));
        assert!(!verify("anything", "not a phc string"));
    }
}
