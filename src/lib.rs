//! API Key Rotator for Azure: renews API keys in the API manager before they expire and writes
//! them into every place consumer apps read them from.
//!
//! Layout: [`functions`] is the Azure Functions custom-handler surface, [`rotation`] the run and
//! its report, [`targets`] one folder per kind of store, [`toolkit`] the sealed company details
//! and the API-manager issuers, [`mapping`] the apps mapping, [`azure`] cloud endpoints,
//! credentials and the shared HTTP client, `sandbox` (feature `sandbox`) the local doubles of
//! every outside service with the handler's settings for them, [`cli`] the command line.

pub mod audit;
pub mod azure;
pub mod cli;
pub mod dashboard;
pub mod error;
pub mod fan_out;
pub mod functions;
pub mod json;
pub mod logging;
pub mod mapping;
pub mod notify;
pub mod rfc3339;
pub mod rotation;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secret;
pub mod settings;
pub mod targets;
pub mod telemetry;
pub mod toolkit;
