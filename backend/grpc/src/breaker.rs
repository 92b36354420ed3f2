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
    /// Whether a call may go now.
    fn admit(&self, now: Instant) -> bool {
        let Ok(mut down) = self.down.lock() else { return true };
        match &mut *down {
            None => true,
            Some(down) if !down.trying && now >= down.trial_at => {
                down.trying = true;
                true
            }
            Some(_) => false,
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
        if !self.state.admit(Instant::now()) {
            metrics::counter!("shop_dependency_skipped_total", "dependency" => self.state.name).increment(1);
            let skipped = tonic::Status::unavailable(format!(
                "{} did not answer a moment ago; the call was not made",
                self.state.name
            ));
            return Box::pin(std::future::ready(Err(Box::new(skipped) as BoxError)));
        }
        let future = self.inner.call(request);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            match future.await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_opens_it_a_trial_at_a_time_and_an_answer_closes_it() {
        let state = State { name: "test", down: Mutex::new(None) };
        let start = Instant::now();
        assert!(state.admit(start));
        state.failed(start);
        assert!(!state.admit(start), "skipped at once");
        assert!(!state.admit(start + Duration::from_millis(200)));
        let trial = start + FIRST_TRIAL;
        assert!(state.admit(trial), "one trial");
        assert!(!state.admit(trial), "only one at a time");
        state.failed(trial);
        assert!(!state.admit(trial + FIRST_TRIAL), "twice as long after a failed trial");
        assert!(state.admit(trial + FIRST_TRIAL * 2));
        state.answered();
        assert!(state.admit(trial) && state.admit(trial), "closed: every call goes");
    }

    #[test]
    fn the_wait_stops_growing_at_five_seconds() {
        let state = State { name: "test", down: Mutex::new(None) };
        let mut now = Instant::now();
        state.failed(now);
        for _ in 0..10 {
            now += LONGEST_WAIT;
            assert!(state.admit(now));
            state.failed(now);
        }
        assert!(state.admit(now + LONGEST_WAIT), "never longer than five seconds");
    }
}
