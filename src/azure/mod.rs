//! Everything Azure-wide: cloud endpoints, credentials, the shared HTTP client, and the blob
//! storage calls of the run lock.

pub mod call;
pub mod cloud;
pub mod credential;
pub mod http;
pub mod pace;
pub mod retry;
pub mod storage;
