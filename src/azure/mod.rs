//! Everything Azure-wide: cloud endpoints, credentials, and the shared HTTP client.

pub mod cloud;
pub mod credential;
pub mod http;
pub mod retry;
