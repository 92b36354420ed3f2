//! `shop healthcheck`: the container health check, from the binary itself
//! (the image carries no curl or grpcurl).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Ok when `target` answers healthy within `timeout`.
pub async fn check(target: &str, timeout: Duration) -> Result<()> {
    tokio::time::timeout(timeout, ask(target))
        .await
        .with_context(|| format!("{target} did not answer within {} s", timeout.as_secs()))?
}

async fn ask(target: &str) -> Result<()> {
    if let Some(address) = target.strip_prefix("grpc://") {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .context("the gRPC address")?
            .connect()
            .await
            .with_context(|| format!("connecting to {address}"))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
            .context("grpc.health.v1.Health/Check")?;
        let status = answer.into_inner().status();
        if status != ServingStatus::Serving {
            bail!("{address} is {}", status.as_str_name());
        }
        Ok(())
    } else if target.starts_with("http://") {
        let response = reqwest::get(target).await.with_context(|| format!("GET {target}"))?;
        if !response.status().is_success() {
            bail!("GET {target} answered {}", response.status());
        }
        Ok(())
    } else {
        bail!("the target is http://HOST:PORT/PATH or grpc://HOST:PORT, not {target}")
    }
}
