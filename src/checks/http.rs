//! Placeholder, replaced by the real http check.
use super::{BuildError, Check, RunContext, RunResult};
use futures::future::BoxFuture;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {}

impl HttpSpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

pub struct HttpCheck;

impl HttpCheck {
    pub fn new(_spec: &HttpSpec) -> Result<Self, BuildError> {
        Ok(Self)
    }
}

impl Check for HttpCheck {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
