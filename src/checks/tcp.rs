//! Placeholder, replaced by the real tcp check.
use super::{BuildError, Check, RunContext, RunResult};
use futures::future::BoxFuture;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {}

impl TcpSpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

pub struct TcpCheck;

impl TcpCheck {
    pub fn new(_spec: &TcpSpec) -> Result<Self, BuildError> {
        Ok(Self)
    }
}

impl Check for TcpCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
