//! Every integration test, in one binary (one link of the library instead of one per file).
//! Each module is a former `tests/<name>.rs`; `common` starts the sandbox and the real binary.

mod common;

mod apigee_renewal;
mod app_configuration;
mod app_insights;
mod app_settings;
mod audit;
mod bad_input;
mod cached_vault;
mod cli;
mod cli_dry_run;
mod cli_output;
mod cli_validate;
mod conformance;
mod core_tools_layout;
mod dashboard;
mod deployment_modes;
mod failure_handling;
mod fault_matrix;
mod files_target;
mod front_end;
mod functions_host;
mod infra;
mod issuer_conformance;
mod key_check;
mod key_vault_sdk;
mod logs;
mod long_runs;
mod mapping_merge;
mod minimal_requests;
mod notify;
mod package;
mod pipelines;
mod redaction;
mod revocation;
mod rollback;
mod rotation;
mod run_lock;
mod sdk_oracle;
mod self_contained;
mod status;
mod throttling;
mod toolkit_command;
mod toolkit_limits;
