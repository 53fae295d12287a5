//! The rotator as the three entry points (HTTP, timer, command line) use it: settings and
//! mapping checked on every run, then the engine.

use super::engine::{run, RunOptions};
use super::lock::{LockError, RunLock};
use super::report::Report;
use super::status::{StatusAnswer, StatusOptions};
use crate::azure::call::Call;
use crate::azure::{credential, http, retry};
use crate::error::Error;
use crate::mapping::{self, MappingErrors};
use crate::settings::{SettingError, Settings};
use crate::targets::{self, TargetContext};
use crate::toolkit::{self, KeySource};
use azure_core::credentials::TokenCredential;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long past the run's deadline releasing the run lock may take.
const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// Why a run could not start.
#[derive(Debug)]
pub enum RunError {
    /// Missing or malformed settings (HTTP 500).
    Settings(Vec<SettingError>),
    /// The mapping is invalid (HTTP 400).
    Mapping(MappingErrors),
    /// The request itself is invalid (HTTP 400).
    BadRequest(String),
    /// Something the run needs could not be set up (HTTP 500).
    Setup(Error),
    /// Another run holds the run lock (HTTP 409); the message says where.
    InProgress(String),
    /// The app asked for is not in the mapping (`status`: HTTP 404; a run reports it as
    /// [`RunError::BadRequest`], as it always has).
    UnknownApp(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Settings(problems) => {
                f.write_str("invalid settings:")?;
                problems.iter().try_for_each(|p| write!(f, "\n  {p}"))
            }
            RunError::Mapping(errors) => write!(f, "invalid mapping:\n{errors}"),
            RunError::BadRequest(m) => f.write_str(m),
            RunError::Setup(e) => write!(f, "{e}"),
            RunError::InProgress(m) => write!(f, "a run is in progress: {m}"),
            RunError::UnknownApp(m) => f.write_str(m),
        }
    }
}

/// Everything a run needs that lives as long as the process: settings, the shared HTTP client,
/// the credential (and its token cache), where keys come from, and the run lock.
pub struct Rotator {
    settings: Arc<Settings>,
    policy: Arc<retry::RetryPolicy>,
    http: Result<reqwest::Client, Error>,
    credential: Result<Arc<dyn TokenCredential>, Error>,
    keys: Result<Arc<dyn KeySource>, Error>,
    vaults: targets::key_vault::VaultClients,
    lock: Result<RunLock, Error>,
    audit: crate::audit::Sink,
}

impl Rotator {
    /// Sets everything up once; a failure is kept and reported by each run, never fatal here.
    pub fn new(settings: Settings) -> Self {
        let settings = Arc::new(settings);
        let policy = Arc::new(retry::RetryPolicy::from_limits(&settings.outbound));
        let http = load_ca(&settings)
            .and_then(|ca| http::build_client(ca.as_deref(), settings.outbound.request_timeout));
        let credential = http
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|h| credential::build(&settings, h));
        let lock = RunLock::from_settings(
            &settings,
            http.as_ref().map_err(Clone::clone),
            credential.clone(),
        );
        // Renewals take a per-app lease in the same storage account as the run lock, so that
        // ToolkitApp calls on several instances never renew one app twice.
        let renewal_lock = lock
            .as_ref()
            .ok()
            .and_then(RunLock::renewal_leases)
            .map(|l| Arc::new(l) as Arc<dyn toolkit::RenewalLock>);
        let keys = http
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|h| toolkit::key_source_with_lock(&settings, h.clone(), renewal_lock));
        for problem in settings.problems() {
            tracing::error!(setting = %problem.setting, "{problem}");
        }
        if let Err(e) = &keys {
            tracing::error!(code = e.code(), "toolkit unavailable: {e}");
        }
        match &lock {
            Ok(lock) => tracing::info!(lock = %lock.describe(), "run lock"),
            Err(e) => tracing::error!(code = e.code(), "run lock unavailable: {e}"),
        }
        let audit =
            crate::audit::Sink::new(&settings, lock.as_ref().ok().and_then(RunLock::blob_client));
        tracing::info!(audit = %audit.describe(), "audit trail");
        Self {
            settings,
            policy,
            http,
            credential,
            keys,
            vaults: Default::default(),
            lock,
            audit,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The call of one run or one ToolkitApp request starting now: this process's retry
    /// policy, and the deadline the settings give the entry point (`http_triggered`: the HTTP
    /// functions, whose host gives up sooner).
    pub fn call(&self, http_triggered: bool) -> Call {
        let deadline = Instant::now() + self.settings.deadlines.for_run(http_triggered);
        Call::new(self.policy.clone(), Some(deadline))
    }

    /// Where audit records go (and are read from).
    pub fn audit(&self) -> &crate::audit::Sink {
        &self.audit
    }

    /// The shared HTTP client, or why there is none.
    pub fn http(&self) -> Result<&reqwest::Client, Error> {
        self.http.as_ref().map_err(Clone::clone)
    }

    /// What could not be set up (the HTTP client and its CA, the credential, the run lock),
    /// each once, for `validate --settings`; the toolkit's problems are [`Rotator::key_source`]'s.
    pub fn setup_problems(&self) -> Vec<Error> {
        let mut out: Vec<Error> = Vec::new();
        for e in [
            self.http.as_ref().err(),
            self.credential.as_ref().err(),
            self.lock.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            if !out.iter().any(|o| o.to_string() == e.to_string()) {
                out.push(e.clone());
            }
        }
        out
    }

    /// Where keys come from, or why the toolkit is unavailable.
    pub fn key_source(&self) -> Result<Arc<dyn KeySource>, Error> {
        self.keys.clone()
    }

    /// Validates settings and mapping, takes the run lock, then runs the rotation under the
    /// retry policy, with the concurrency and deadline the settings give; the lock is held
    /// until the run ends and released on every path.
    ///
    /// The deadline counts from the call: taking the lock spends it too, so an HTTP-triggered
    /// run answers within its deadline however slow the storage account is.
    pub async fn run(&self, options: &RunOptions) -> Result<Report, RunError> {
        // Everything logged during the run carries its ID (Application Insights' operation);
        // the caller's when it chose one (ApiKeyRotator's `Location` names it).
        let run_id = options
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // The span is named `logging::RUN_SPAN`.
        let span = tracing::info_span!("rotation_run", run_id = %run_id);
        let options = &RunOptions {
            run_id: Some(run_id),
            ..options.clone()
        };
        let result = tracing::Instrument::instrument(self.run_traced(options), span).await;
        crate::telemetry::flush().await;
        result
    }

    async fn run_traced(&self, options: &RunOptions) -> Result<Report, RunError> {
        let started = time::OffsetDateTime::now_utc();
        let call = self.call(options.http_triggered);
        let deadline = call.deadline().unwrap_or_else(Instant::now);
        let mut options = self.with_revocation(options)?;
        let channels =
            crate::notify::config::from_settings(&self.settings).map_err(RunError::Settings)?;
        crate::audit::check_settings(&self.settings).map_err(RunError::Settings)?;
        options.seen = crate::notify::upcoming::watch(&channels);
        let mut report = self.run_checked(&options, &call, deadline).await?;
        crate::audit::record_run(&self.audit, &options.origin, &mut report, started).await;
        let keys = self.keys.as_ref().ok().map(|k| k.as_ref());
        let seen = options.seen.as_deref();
        crate::notify::deliver::notify_run(
            &self.settings,
            self.http(),
            keys,
            seen,
            &call,
            &mut report,
        )
        .await;
        Ok(report)
    }

    /// `options` with the revocation settings read ([`RunOptions::revocation`]), after the
    /// checks of the run's start that revocation adds: the settings and the opt-out list
    /// (against the whole mapping, before `app` narrows it); `revoke=immediate` only with
    /// `force` and `app`; any mode but the settings' only with the in-process toolkit.
    fn with_revocation(&self, options: &RunOptions) -> Result<RunOptions, RunError> {
        use super::revocation::RevokeMode;
        // What the run checks first, first here too: a missing mapping is a settings problem.
        let problems = self.settings.check_for_rotation();
        if !problems.is_empty() {
            return Err(RunError::Settings(problems));
        }
        if options.revoke == RevokeMode::Immediately && !(options.force && options.app.is_some()) {
            return Err(RunError::BadRequest(
                "revoke=immediate needs force=true and app=<apimAppName>: an emergency rotation renews and revokes one app's key".into(),
            ));
        }
        if options.revoke != RevokeMode::Settings
            && self
                .settings
                .get(crate::settings::TOOLKIT_APP_URL)
                .is_some()
        {
            return Err(RunError::BadRequest(format!(
                "revoking at once needs the in-process toolkit, and {} is set: a remote ToolkitApp only hands out keys",
                crate::settings::TOOLKIT_APP_URL
            )));
        }
        let mapping = self.mapping()?;
        Ok(RunOptions {
            revocation: self.revocation_policy(&mapping)?,
            ..options.clone()
        })
    }

    /// The revocation settings, checked against `mapping`'s apps (settings problems otherwise).
    pub fn revocation_policy(
        &self,
        mapping: &mapping::AppsMapping,
    ) -> Result<super::revocation::RevocationPolicy, RunError> {
        super::revocation::RevocationPolicy::from_settings(
            &self.settings,
            &mapping.apim_app_names(),
        )
        .map_err(RunError::Settings)
    }

    async fn run_checked(
        &self,
        options: &RunOptions,
        call: &Call,
        deadline: Instant,
    ) -> Result<Report, RunError> {
        self.check_settings()?;
        if options.force && options.app.is_none() {
            return Err(RunError::BadRequest(
                "force=true needs app=<apimAppName>: emergency rotation is for one app at a time"
                    .into(),
            ));
        }
        if options.rollback && (options.app.is_none() || options.force) {
            return Err(RunError::BadRequest(
                "a rollback needs app=<apimAppName> and no force: it rolls one app back to the key its current key replaced"
                    .into(),
            ));
        }
        let Prepared {
            mapping,
            keys,
            deps,
            plan,
        } = self
            .prepare(options.app.as_deref(), call)
            .map_err(|e| match e {
                RunError::UnknownApp(m) => RunError::BadRequest(m),
                e => e,
            })?;
        let max_wait = super::key_check::KeyChecks::max_wait(&self.settings)
            .map_err(|e| RunError::Settings(vec![e]))?;
        let options = &RunOptions {
            key_checks: super::key_check::KeyChecks::new(&mapping, deps.http.clone(), max_wait),
            ..options.clone()
        };
        let lock = self.lock.as_ref().map_err(|e| RunError::Setup(e.clone()))?;
        let guard = tokio::time::timeout_at(deadline.into(), lock.acquire(call))
            .await
            .map_err(|_| RunError::Setup(Error::deadline_exceeded("taking the run lock")))?
            .map_err(|e| match e {
                LockError::InProgress(m) => RunError::InProgress(m),
                LockError::Failed(e) => RunError::Setup(e),
            })?;
        let mut report = match &options.app {
            Some(app) if options.rollback => {
                self.rollback_and_run(call, keys.as_ref(), app, &plan, options, &deps)
                    .await
            }
            _ => {
                run(
                    call,
                    keys.as_ref(),
                    &plan,
                    &mapping.apim_app_names(),
                    options,
                    &deps,
                )
                .await
            }
        };
        report.lock = lock.describe();
        // Releasing gets a few seconds beyond the deadline at most (every call it makes ends
        // by then): a lease left behind expires on its own.
        let note = guard
            .release(&call.with_deadline(Some(deadline + RELEASE_GRACE)))
            .await;
        if let Some(note) = note {
            report
                .warnings
                .push(super::report::ReportEntry::new("LOCK", "", "", note));
        }
        Ok(report)
    }

    /// The rollback step for `app` under the run lock, then the run that redistributes the
    /// restored key (in a dry run: the plan of that run, as if the step were done). A step
    /// that cannot be taken is the report's one error, and nothing is written.
    async fn rollback_and_run(
        &self,
        call: &Call,
        keys: &dyn KeySource,
        app: &str,
        plan: &[targets::PlannedContainer],
        options: &RunOptions,
        deps: &TargetContext,
    ) -> Report {
        let apps = [app.to_string()];
        // The run reads every write back and revokes the withdrawn key once every target
        // holds the restored one.
        let options = &RunOptions {
            revoke: super::revocation::RevokeMode::Withdrawn,
            ..options.clone()
        };
        match keys.rollback(call, app, options.dry_run).await {
            Ok(outcome) => {
                let entry = super::rollback::entry(app, &outcome, options.dry_run);
                let mut report = if options.dry_run {
                    let restored = super::rollback::Restored::new(keys, app, outcome);
                    run(call, &restored, plan, &apps, options, deps).await
                } else {
                    run(call, keys, plan, &apps, options, deps).await
                };
                report.successes.insert(0, entry);
                report
            }
            Err(e) => {
                let started = Instant::now();
                tracing::warn!(app, code = e.code(), error = %e, "rollback refused");
                let mut report = super::engine::new_report(options);
                report.summary.apps = 1;
                report.errors.push(
                    super::report::ReportEntry::new(
                        super::rollback::ROLLBACK,
                        app,
                        "",
                        e.to_string(),
                    )
                    .with_code(e.code()),
                );
                report.finish(started);
                report
            }
        }
    }

    /// What every key the API manager holds for each mapped app (or only `options.app`) is,
    /// and which of them each target holds: the same settings, mapping and plan as a run, and
    /// exactly a dry run's reads ([`super::status`]). It takes no run lock: it changes nothing,
    /// so it may run beside a rotation (it then shows the targets as they are at that moment).
    pub async fn status(&self, options: &StatusOptions) -> Result<StatusAnswer, RunError> {
        let call = self.call(options.http_triggered);
        self.check_settings()?;
        let Prepared {
            mapping,
            keys,
            deps,
            plan,
        } = self.prepare(options.app.as_deref(), &call)?;
        super::status::gather(
            &call,
            keys.as_ref(),
            &plan,
            &mapping.apim_app_names(),
            &deps,
        )
        .await
        .map_err(RunError::Setup)
    }

    /// The settings a run needs, or every problem with them.
    fn check_settings(&self) -> Result<(), RunError> {
        let problems = self.settings.check_for_rotation();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RunError::Settings(problems))
        }
    }

    /// The mapping (only `app`'s part when given), the key source, the targets' context for
    /// `call`, and the plan: what a run and a status start from.
    fn prepare(&self, app: Option<&str>, call: &Call) -> Result<Prepared, RunError> {
        let mut mapping = self.mapping()?;
        if let Some(app) = app {
            if !mapping.apim_app_names().iter().any(|a| a == app) {
                return Err(RunError::UnknownApp(format!(
                    "app \"{app}\" is not in the mapping"
                )));
            }
            mapping = mapping.only_app(app);
        }
        let keys = self.keys.clone().map_err(RunError::Setup)?;
        let deps = TargetContext {
            http: self.http.clone().map_err(RunError::Setup)?,
            credential: self.credential.clone().map_err(RunError::Setup)?,
            cloud: self.settings.cloud.clone(),
            settings: self.settings.clone(),
            vaults: self.vaults.clone(),
            call: call.clone(),
        };
        let plan = targets::plan(&mapping, &deps).map_err(RunError::Setup)?;
        Ok(Prepared {
            mapping,
            keys,
            deps,
            plan,
        })
    }

    /// Parses and validates the mapping settings.
    pub fn mapping(&self) -> Result<mapping::AppsMapping, RunError> {
        let settings = self.settings.clone();
        mapping::parse(
            &self.settings.mapping_parts,
            &self.settings.cloud,
            &move |name| settings.get(name).is_some(),
        )
        .map_err(RunError::Mapping)
    }
}

/// What [`Rotator::prepare`] gives a run or a status.
struct Prepared {
    mapping: mapping::AppsMapping,
    keys: Arc<dyn KeySource>,
    deps: TargetContext,
    plan: Vec<targets::PlannedContainer>,
}

fn load_ca(settings: &Settings) -> Result<Option<Vec<u8>>, Error> {
    settings
        .trusted_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                Error::config(format!(
                    "{}: cannot read {}: {e}",
                    http::TRUSTED_CA_SETTING,
                    path.display()
                ))
            })
        })
        .transpose()
}
