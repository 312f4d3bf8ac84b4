//! A small control-plane client for a target's `/healthz`, `/debug/*` and
//! `/admin/*` routes: short timeouts, JSON in and out, the bearer token
//! attached. [`ControlError::Unreachable`] is what target death looks like.
//!
//! It is a `reqwest` client (plain HTTP, no proxy: the control plane talks
//! to the address the user named, never through an environment's proxy);
//! the load itself goes through the engine's raw hyper connections, where
//! every microsecond counts.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use reqwest::{Method, StatusCode};

use leaklab_model::run::TargetMemory;
use leaklab_model::Catalogue;

use super::Target;

/// A control-plane client: short timeouts, JSON in and out, token attached.
#[derive(Clone)]
pub struct Control {
    target: Target,
    client: reqwest::Client,
    timeout: Duration,
}

/// What went wrong with a control request; `Unreachable` is what target death
/// looks like from outside.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("target unreachable: {0}")]
    Unreachable(String),
    #[error("target answered {status} for {path}")]
    Status { status: StatusCode, path: String },
    #[error("bad JSON from {path}: {err}")]
    Json {
        path: String,
        err: serde_json::Error,
    },
    #[error("{path} did not answer within {within:?}")]
    Timeout { path: String, within: Duration },
}

impl Control {
    pub fn new(target: &Target) -> Control {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(2)
            .no_proxy()
            .build()
            // Only a TLS backend or a system resolver failing to load can
            // fail here, and this build has neither.
            .unwrap_or_default();
        Control {
            target: target.clone(),
            client,
            timeout: Duration::from_secs(2),
        }
    }

    /// The target this client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ControlError> {
        self.send_within(method, path, body, self.timeout).await
    }

    /// `GET path` as bytes, waiting up to `within` (heap profiles and task
    /// dumps take seconds to symbolize).
    pub async fn get_bytes_within(
        &self,
        path: &str,
        within: Duration,
    ) -> Result<Bytes, ControlError> {
        self.send_within(Method::GET, path, None, within).await
    }

    async fn send_within(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        within: Duration,
    ) -> Result<Bytes, ControlError> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.target.base, path));
        if let Some(token) = &self.target.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let unreachable =
            |e: reqwest::Error| ControlError::Unreachable(format!("{e}: {}", source_chain(&e)));
        let fut = async {
            let resp = req.send().await.map_err(unreachable)?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(unreachable)?;
            if !status.is_success() {
                return Err(ControlError::Status {
                    status,
                    path: path.to_string(),
                });
            }
            Ok(bytes)
        };
        tokio::time::timeout(within, fut)
            .await
            .map_err(|_| ControlError::Timeout {
                path: path.to_string(),
                within,
            })?
    }

    /// `GET path` as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ControlError> {
        let bytes = self.send(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).map_err(|err| ControlError::Json {
            path: path.to_string(),
            err,
        })
    }

    /// The target's scenario catalogue (`GET /admin/scenarios`).
    pub async fn catalogue(&self) -> Result<Catalogue, ControlError> {
        self.get_json("/admin/scenarios").await
    }

    /// The target's own memory report (`GET /debug/memory`).
    pub async fn memory(&self) -> Result<TargetMemory, ControlError> {
        self.get_json("/debug/memory").await
    }

    /// `GET path` as text.
    pub async fn get_text(&self, path: &str) -> Result<String, ControlError> {
        let bytes = self.send(Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `PUT /admin/flags/{id}` with `{"enabled": enabled}`.
    pub async fn set_flag(&self, id: &str, enabled: bool) -> Result<()> {
        let body = serde_json::to_vec(&serde_json::json!({ "enabled": enabled }))?;
        self.send(
            Method::PUT,
            &format!("/admin/flags/{id}"),
            Some(body.into()),
        )
        .await
        .with_context(|| format!("setting flag {id}"))?;
        Ok(())
    }

    /// Waits until `/healthz` answers, for at most `within`.
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Any HTTP answer means the server is up: a service that is not
            // leaklab's may have no /healthz (404).
            match self.send(Method::GET, "/healthz", None).await {
                Ok(_) | Err(ControlError::Status { .. }) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    bail!(
                        "{} did not become ready within {within:?}: {e}",
                        self.target.base
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// The error's source chain in one line ("connection refused" sits deep in it).
pub fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}
