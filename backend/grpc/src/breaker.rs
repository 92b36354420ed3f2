//! A circuit breaker for a client channel: a service that did not answer
//! (refused, black-holed until the call's time-out, reset) costs one call its
//! failure, and then calls are refused at once as UNAVAILABLE ("skipped")
//! instead of each waiting for a time-out of its own. One call is let
//! through after a quarter of a second, then after twice as long each time
//! it fails (at most five seconds); the first that gets an answer closes
//! the breaker again. Any answer the service gives, a refusal included,
//! counts as an answer: only the transport failing opens it.
//!
//! On `/metrics`: `shop_dependency_up{dependency=<service>}` (1 or 0) and
//! `shop_dependency_skipped_total{dependency=<service>}`; each change of
//! state is logged once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FIRST_TRIAL: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Breaker<S> {
    inner: S,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    name: &'static str,
    down: Mutex<Option<Down>>,
}

#[derive(Debug, Clone, Copy)]
struct Down {
    /// When the next call may go through, as a trial.
    trial_at: Instant,
    wait: Duration,
    /// A trial call is under way: the others are still skipped.
    trying: bool,
}

impl<S> Breaker<S> {
    /// `name` names the service in logs and metrics.
    pub fn new(inner: S, name: &'static str) -> Self {
        metrics::gauge!("shop_dependency_up", "dependency" => name).set(1.0);
        Self { inner, state: Arc::new(State { name, down: Mutex::new(None) }) }
    }
}

impl State {
    /// Whether a call may go now, and whether it goes as the trial.
    fn admit(&self, now: Instant) -> Option<Admitted> {
        let Ok(mut down) = self.down.lock() else { return Some(Admitted::Closed) };
        match &mut *down {
            None => Some(Admitted::Closed),
            Some(down) if !down.trying && now >= down.trial_at => {
                down.trying = true;
                Some(Admitted::Trial)
            }
            Some(_) => None,
        }
    }

    /// A trial call that ended without an outcome (its caller went away
    /// and dropped it): the next call may try instead. Without this, the
    /// breaker would wait for that trial forever.
    fn abandoned(&self) {
        if let Ok(mut down) = self.down.lock()
            && let Some(down) = &mut *down
        {
            down.trying = false;
        }
    }

    fn answered(&self) {
        let Ok(mut down) = self.down.lock() else { return };
        if down.take().is_some() {
            metrics::gauge!("shop_dependency_up", "dependency" => self.name).set(1.0);
            tracing::info!(dependency = self.name, "dependency back: used again");
        }
    }

    fn failed(&self, now: Instant) {
        let Ok(mut down) = self.down.lock() else { return };
        match &mut *down {
            None => {
                *down = Some(Down { trial_at: now + FIRST_TRIAL, wait: FIRST_TRIAL, trying: false });
                metrics::gauge!("shop_dependency_up", "dependency" => self.name).set(0.0);
                tracing::warn!(dependency = self.name, "dependency down: calls skipped until it answers again");
            }
            Some(down) if down.trying => {
                down.wait = (down.wait * 2).min(LONGEST_WAIT);
                down.trial_at = now + down.wait;
                down.trying = false;
            }
            Some(_) => {}
        }
    }
}

impl<S, B, R> Service<http::Request<B>> for Breaker<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(admitted) = self.state.admit(Instant::now()) else {
            metrics::counter!("shop_dependency_skipped_total", "dependency" => self.state.name).increment(1);
            let skipped = tonic::Status::unavailable(format!(
                "{} did not answer a moment ago; the call was not made",
                self.state.name
            ));
            return Box::pin(std::future::ready(Err(Box::new(skipped) as BoxError)));
        };
        let future = self.inner.call(request);
        let mut trial =
            (admitted == Admitted::Trial).then(|| Trial { state: Arc::clone(&self.state), finished: false });
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let outcome = future.await;
            // Ended with an outcome: the guard has nothing to give back.
            if let Some(trial) = &mut trial {
                trial.finished = true;
            }
            match outcome {
                Ok(response) => {
                    state.answered();
                    Ok(response)
                }
                Err(error) => {
                    state.failed(Instant::now());
                    Err(error.into())
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Closed,
    Trial,
}

/// Held by a trial call while it runs: dropped unfinished, it gives the
/// trial back.
struct Trial {
    state: Arc<State>,
    finished: bool,
}

impl Drop for Trial {
    fn drop(&mut self) {
        if !self.finished {
            self.state.abandoned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_opens_it_a_trial_at_a_time_and_an_answer_closes_it() {
        let state = State { name: "test", down: Mutex::new(None) };
        let start = Instant::now();
        assert_eq!(state.admit(start), Some(Admitted::Closed));
        state.failed(start);
        assert_eq!(state.admit(start), None, "skipped at once");
        assert_eq!(state.admit(start + Duration::from_millis(200)), None);
        let trial = start + FIRST_TRIAL;
        assert_eq!(state.admit(trial), Some(Admitted::Trial), "one trial");
        assert_eq!(state.admit(trial), None, "only one at a time");
        state.failed(trial);
        assert_eq!(state.admit(trial + FIRST_TRIAL), None, "twice as long after a failed trial");
        assert_eq!(state.admit(trial + FIRST_TRIAL * 2), Some(Admitted::Trial));
        state.abandoned();
        assert_eq!(state.admit(trial + FIRST_TRIAL * 2), Some(Admitted::Trial), "a dropped trial is given back");
        state.answered();
        assert_eq!(state.admit(trial), Some(Admitted::Closed), "closed: every call goes");
        assert_eq!(state.admit(trial), Some(Admitted::Closed));
    }

    /// A service whose first call fails, second never ends, and the others
    /// are answered.
    #[derive(Clone, Default)]
    struct Flaky(Arc<std::sync::atomic::AtomicUsize>);

    impl Service<http::Request<()>> for Flaky {
        type Response = http::Response<()>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                match n {
                    0 => Err("refused".into()),
                    1 => std::future::pending().await,
                    _ => Ok(http::Response::new(())),
                }
            })
        }
    }

    #[tokio::test]
    async fn a_trial_dropped_unfinished_is_given_back() {
        let mut breaker = Breaker::new(Flaky::default(), "test");
        assert!(breaker.call(http::Request::new(())).await.is_err(), "opens it");
        assert!(breaker.call(http::Request::new(())).await.is_err(), "skipped");
        tokio::time::sleep(FIRST_TRIAL).await;
        let trial = breaker.call(http::Request::new(()));
        // Its caller goes away (a client that hung up) before an answer.
        drop(trial);
        assert!(breaker.call(http::Request::new(())).await.is_ok(), "the next call is the trial, and closes it");
        assert!(breaker.call(http::Request::new(())).await.is_ok());
    }

    #[test]
    fn the_wait_stops_growing_at_five_seconds() {
        let state = State { name: "test", down: Mutex::new(None) };
        let mut now = Instant::now();
        state.failed(now);
        for _ in 0..10 {
            now += LONGEST_WAIT;
            assert_eq!(state.admit(now), Some(Admitted::Trial));
            state.failed(now);
        }
        assert_eq!(state.admit(now + LONGEST_WAIT), Some(Admitted::Trial), "never longer than five seconds");
    }
}
