//! The target: its URL, the loopback safety rule, and a small control-plane
//! client for `/debug/memory`, `/admin/scenarios` and `/admin/flags`.
//!
//! loadgen only sends load to the address the user names. Targets that do not
//! resolve to loopback are refused unless `--allow-remote` is given.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::UsageError;

/// A parsed, vetted target.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://host:port` without a trailing slash.
    pub base: String,
    /// `host:port`, sent as the `Host` header.
    pub authority: String,
    /// The resolved socket address load connections use.
    pub addr: SocketAddr,
    /// Bearer token for `/debug/*` and `/admin/*` (the target's `--admin-token`).
    pub token: Option<String>,
}

impl Target {
    /// Parses `url` (`http://host:port[/]`), resolves it, and applies the
    /// loopback rule.
    pub fn parse(url: &str, token: Option<String>, allow_remote: bool) -> Result<Target> {
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if url.starts_with("https://") => {
                return Err(
                    UsageError(format!("{url}: https is not supported (plain http only)")).into(),
                )
            }
            None => url,
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(UsageError(format!("{url}: expected http://HOST:PORT")).into());
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| UsageError(format!("{url}: cannot resolve: {e}")))?
            .collect();
        let Some(&addr) = addrs.first() else {
            return Err(UsageError(format!("{url}: resolves to no address")).into());
        };
        if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(UsageError(format!(
                "{url} is not a loopback address; loadgen only loads remote targets with --allow-remote"
            ))
            .into());
        }
        Ok(Target {
            base: format!("http://{with_port}"),
            authority: with_port,
            addr,
            token,
        })
    }
}

/// A control-plane client: short timeouts, JSON in and out, token attached.
#[derive(Clone)]
pub struct Control {
    target: Target,
    client: Client<HttpConnector, Full<Bytes>>,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2)
            .build_http();
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
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.target.base, path));
        if let Some(token) = &self.target.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let fut = async {
            let resp =
                self.client.request(req).await.map_err(|e| {
                    ControlError::Unreachable(format!("{e:#}: {}", source_chain(&e)))
                })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ControlError::Unreachable(e.to_string()))?
                .to_bytes();
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
            match self.send(Method::GET, "/healthz", None).await {
                Ok(_) => return Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_parse_and_remote_ones_need_allow_remote() {
        let t = Target::parse("http://127.0.0.1:8080/", None, false).unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8080");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert!(Target::parse("localhost:9", None, false).is_ok());
        let err = Target::parse("http://192.0.2.1:80", None, false).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        assert!(Target::parse("http://192.0.2.1:80", None, true).is_ok());
        assert!(Target::parse("https://127.0.0.1:1", None, false).is_err());
    }
}
