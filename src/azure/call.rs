//! The context every outbound request travels with: the retry policy (attempts, timeouts,
//! caps) and the deadline of the run or request it belongs to.
//!
//! A [`Call`] is made once per run ([`crate::rotation::Rotator::run`]) or per ToolkitApp
//! request, and passed down to whatever sends requests: [`crate::azure::retry::send`] and
//! [`crate::azure::credential::bearer`] take one, so code that sends without a context does not
//! compile. Clients kept across runs (a vault's SDK client) hold no policy of their own: each
//! request carries its run's `Call` in the SDK's per-request [`Context`] ([`Call::sdk_context`]),
//! where the SDK policies of [`crate::azure::retry`] read it.

use crate::azure::retry::RetryPolicy;
use azure_core::http::Context;
use std::sync::Arc;
use std::time::Instant;

/// The retry policy and deadline of one run (or one ToolkitApp request).
#[derive(Debug, Clone)]
pub struct Call {
    policy: Arc<RetryPolicy>,
    deadline: Option<Instant>,
}

impl Call {
    /// Requests under `policy`, none starting, waiting or lasting beyond `deadline` (`None`: no
    /// deadline).
    pub fn new(policy: Arc<RetryPolicy>, deadline: Option<Instant>) -> Self {
        Self { policy, deadline }
    }

    /// The retry policy.
    pub fn policy(&self) -> &Arc<RetryPolicy> {
        &self.policy
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The same policy with another deadline (releasing the run lock gets a grace period past
    /// the run's; background lease renewals have none).
    pub fn with_deadline(&self, deadline: Option<Instant>) -> Self {
        Self {
            policy: self.policy.clone(),
            deadline,
        }
    }

    /// How many requests the run keeps in flight in all at most (the settings' concurrency).
    pub fn concurrency(&self) -> usize {
        self.policy.total
    }

    /// How many calls one piece of work (a container's reads, say) starts at once: as many as
    /// the policy lets be in flight, within reason; the caps do the rest.
    pub fn fan_out(&self) -> usize {
        self.policy.total.clamp(1, 256)
    }

    /// An SDK per-request context carrying this call, for clients shared across runs and for
    /// token requests.
    pub fn sdk_context(&self) -> Context<'static> {
        Context::new().with_value(self.clone())
    }

    /// The call an SDK request carries, if it carries one.
    pub fn of_sdk<'a>(ctx: &'a Context<'_>) -> Option<&'a Call> {
        ctx.value::<Call>()
    }
}
