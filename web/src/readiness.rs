//! `/readyz`: whether this gateway can serve. Ready while it can reach at
//! least one of its gRPC services: a service it cannot reach, one that
//! answers NOT_SERVING (its database is away) and Redis being down are
//! named (`missing`, `degraded`) but leave it ready, since it still serves
//! what does not need them (docs/resilience.md), and every gateway replica
//! shares them: were one unreachable service to make this replica unready,
//! it would make every replica unready at once, and an orchestrator would
//! take the whole shop out, the parts that work with it. Not ready (503)
//! when no service answers at all.
//!
//! Cheap however often it is asked: the answer is kept for a second, and
//! while it is being worked out every other caller waits for that one
//! check rather than starting its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::ServiceUrls;
use crate::dependency_health::Dependency;

/// How long an answer is kept.
const KEPT: Duration = Duration::from_secs(1);
/// The longest a service's health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    services: Vec<(&'static str, HealthClient<Channel>)>,
    redis: Option<Dependency>,
    last: Mutex<Option<(Instant, Report)>>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ready: bool,
    /// What cannot be reached (the gateway is not ready when that is
    /// every service).
    pub missing: Vec<String>,
    /// What answers but is not whole: the gateway serves without it.
    pub degraded: Vec<String>,
}

impl Readiness {
    /// Channels of their own (not the requests'), so a check never waits
    /// behind requests; they connect on first use.
    pub fn new(urls: &ServiceUrls, redis: Option<Dependency>) -> Result<Self, tonic::transport::Error> {
        let client = |url: &str| -> Result<HealthClient<Channel>, tonic::transport::Error> {
            let endpoint = Endpoint::from_shared(url.to_owned())?.connect_timeout(CHECK_TIMEOUT).timeout(CHECK_TIMEOUT);
            Ok(HealthClient::new(endpoint.connect_lazy()))
        };
        let services = vec![
            ("users", client(&urls.users)?),
            ("inventory", client(&urls.inventory)?),
            ("orders", client(&urls.orders)?),
        ];
        Ok(Self { inner: Arc::new(Inner { services, redis, last: Mutex::new(None) }) })
    }

    /// The report, at most a second old.
    pub async fn report(&self) -> Report {
        // Held across the check: callers meanwhile wait for this one.
        let mut last = self.inner.last.lock().await;
        if let Some((at, report)) = &*last
            && at.elapsed() < KEPT
        {
            return report.clone();
        }
        let report = self.check().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn check(&self) -> Report {
        let checks = self.inner.services.iter().map(|(name, client)| {
            let mut client = client.clone();
            async move {
                let request = HealthCheckRequest { service: String::new() };
                let answer = tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await;
                let status = match answer {
                    Ok(Ok(response)) => Some(response.into_inner().status()),
                    Ok(Err(_)) | Err(_) => None,
                };
                (*name, status)
            }
        });
        let mut report = Report { ready: true, missing: Vec::new(), degraded: Vec::new() };
        for (name, status) in futures_util::future::join_all(checks).await {
            match status {
                Some(ServingStatus::Serving) => {}
                Some(_) => report.degraded.push(format!("{name} not serving")),
                None => report.missing.push(format!("{name} unreachable")),
            }
        }
        if self.inner.redis.as_ref().is_some_and(|redis| !redis.is_up()) {
            report.degraded.push("redis down".into());
        }
        report.ready = report.missing.len() < self.inner.services.len();
        report
    }

    /// 200 or 503, with the report as JSON.
    pub async fn answer(&self) -> (StatusCode, axum::Json<Report>) {
        let report = self.report().await;
        let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (status, axum::Json(report))
    }
}
