//! The first stage: the target. Its URL and the loopback safety rule
//! ([`Target`]), the command-line options that name it ([`TargetOpts`],
//! [`AccessOpts`]), a control-plane client ([`control`]) and starting a
//! `leaklab-service` child ([`spawn`]), a container's process ([`container`]), and a target's Prometheus
//! exposition ([`metrics`]) for services that are not leaklab's, and a
//! Prometheus server's range queries ([`prometheus`]).
//!
//! loadgen only sends load to the address the user names. Targets that do not
//! resolve to loopback are refused unless `--allow-remote` is given.

pub mod container;
pub mod control;
pub mod metrics;
pub mod prometheus;
pub mod spawn;

pub use control::{source_chain, Control, ControlError};

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::Result;
use clap::Args;

use crate::errors::UsageError;

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

/// Who may be loaded, and with what: the admin token and the loopback rule.
#[derive(Args, Clone, Debug, Default)]
pub struct AccessOpts {
    /// Bearer token for the target's /debug and /admin routes.
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow a target that is not on loopback. Only load machines you own.
    #[arg(long)]
    pub allow_remote: bool,
}

impl AccessOpts {
    /// Parses `url` with this token and loopback rule.
    pub fn target(&self, url: &str) -> Result<Target> {
        Target::parse(url, self.token.clone(), self.allow_remote)
    }
}

/// The service a command talks to: `--target URL`, or `--spawn` a child.
#[derive(Args, Clone, Debug)]
pub struct TargetOpts {
    /// The service (http://HOST:PORT). Only loopback targets are accepted
    /// unless --allow-remote is given.
    #[arg(
        long,
        env = "LEAKLAB_TARGET",
        default_value = "http://127.0.0.1:8080",
        conflicts_with = "spawn"
    )]
    pub target: String,
    /// Start a leaklab-service child on a free loopback port instead of using
    /// --target; it is stopped when the command ends.
    #[arg(long)]
    pub spawn: bool,
    #[command(flatten)]
    pub access: AccessOpts,
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
