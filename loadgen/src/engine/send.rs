//! Sending one unit: its steps in order over a pooled client (open model)
//! or a connection of its own (max mode), draining each answer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};

use super::unit::Unit;
use crate::target::source_chain;

/// What one unit's HTTP exchange came to.
pub(super) enum Outcome {
    Ok { status_4xx: u64 },
    Failed(String, bool),
}

/// Sends the steps triggering request `nth` of `unit` runs (see
/// [`Unit::steps_for`]), in order, stopping at the first failure.
pub(super) async fn send_unit<S>(
    send: &mut S,
    unit: &Unit,
    nth: u64,
    base: &str,
    host: &HeaderValue,
    key: &str,
    http_requests: &mut u64,
) -> Outcome
where
    S: SendRequest,
{
    let mut status_4xx = 0;
    for step in unit.steps_for(nth) {
        *http_requests += 1;
        match send.send(step.request(base, host, key)).await {
            Ok(status) if status.is_server_error() => {
                return Outcome::Failed(
                    format!(
                        "HTTP {status} for {}{}",
                        step.head,
                        step.tail.as_deref().map(|_| "{key}").unwrap_or("")
                    ),
                    false,
                )
            }
            Ok(status) => {
                if status.is_client_error() {
                    status_4xx += 1;
                }
            }
            Err((msg, refused)) => return Outcome::Failed(msg, refused),
        }
    }
    Outcome::Ok { status_4xx }
}

/// Something that sends one request and drains the response body.
pub(super) trait SendRequest {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::StatusCode, (String, bool)>;
}

pub(super) type Pooled = Client<HttpConnector, Full<Bytes>>;

pub(super) struct PooledSender<'a>(pub(super) &'a Pooled);

impl SendRequest for PooledSender<'_> {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::StatusCode, (String, bool)> {
        let resp = self.0.request(req).await.map_err(|e| {
            let chain = source_chain(&e);
            let refused = chain.contains("refused") || chain.contains("reset");
            (format!("{e}: {chain}"), refused)
        })?;
        let status = resp.status();
        drain(resp.into_body()).await.map_err(|e| (e, false))?;
        Ok(status)
    }
}

pub(super) struct OwnSender(pub(super) hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl SendRequest for OwnSender {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::StatusCode, (String, bool)> {
        self.0.ready().await.map_err(|e| (e.to_string(), true))?;
        let resp = self
            .0
            .send_request(req)
            .await
            .map_err(|e| (e.to_string(), true))?;
        let status = resp.status();
        drain(resp.into_body()).await.map_err(|e| (e, false))?;
        Ok(status)
    }
}

async fn drain(mut body: hyper::body::Incoming) -> Result<(), String> {
    // Frames are dropped as they arrive: nothing of the response is kept.
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| e.to_string())?;
    }
    Ok(())
}
