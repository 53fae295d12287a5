//! The toolkit: sealed company details, the renewal policy, and the API-manager issuers.

pub mod sealed;
