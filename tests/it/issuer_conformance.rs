//! The issuer conformance suite: every issuer (`toolkit/<issuer>/`, built by the registry from
//! the sandbox's sealed details) against its double in the sandbox, over HTTPS with the
//! sandbox CA. What the toolkit relies on, whatever the API manager: listing an app's keys,
//! creating a key with API products (auto and manual approval), not-found, the marks on
//! half-made keys (unfinished, products attached) and finishing them, deleting, and errors of
//! the right [`ErrorKind`]. The oracle is the double's own state (`admin/state`), read through
//! the issuer's test file (`tests/common/<issuer>.rs`), never through the client under test.
//!
//! [`conformance!`] writes one `#[test]` per issuer and case (`apigee::lists_keys`, ...), so
//! each case passes or fails on its own. A new issuer adds one line there.

use crate::common;

use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::error::ErrorKind;
use apikey_rotator::toolkit::{fingerprint, generate_key, AssociationStatus, IssuedKey, KeyMarks};
use common::issuer::{IssuerDouble, Mark, Step, StoredKey};
use common::Env;
use time::{Duration, OffsetDateTime};

/// One test per issuer and case: `name = case(args)` calls `cases::case(&double, args)`.
macro_rules! case {
    ($double:expr, $name:ident = $case:ident($($arg:expr),*)) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            cases::$case(&$double, $($arg),*).await
        }
    };
}

/// The suite for each `issuer => double` (a [`IssuerDouble`] of `tests/common`).
macro_rules! conformance {
    ($($issuer:ident => $double:expr),+ $(,)?) => {$(
        mod $issuer {
            use super::*;
            case!($double, lists_keys = lists_keys());
            case!($double, creates_a_key_with_auto_approved_products = creates_with_products(false));
            case!($double, creates_a_key_and_approves_manual_products = creates_with_products(true));
            case!($double, an_unknown_app_or_key_is_not_found = not_found());
            case!($double, a_refused_creation_leaves_nothing = refused_creation());
            case!($double, a_lost_creation_answer_makes_one_key = lost_creation_answer());
            case!($double, a_failed_renewal_deletes_its_key = failed_renewal_is_deleted());
            case!($double, a_key_left_without_products_is_marked_unfinished = left_unfinished());
            case!($double, a_key_left_unapproved_is_marked_products_attached = left_unapproved());
            case!($double, deletes_a_key = deletes_a_key());
            case!($double, a_new_key_says_which_key_it_replaces = records_what_it_replaces());
            case!($double, revokes_and_reactivates_a_key_never_deleting_it = revokes_and_reactivates());
            case!($double, sets_lifecycle_marks_keeping_every_other_attribute = sets_marks());
            case!($double, revoking_an_unknown_key_is_not_found = revoke_unknown_key());
            case!($double, a_401_is_unauthenticated = error_kind(401, ErrorKind::Unauthenticated));
            case!($double, a_403_is_permission_denied = error_kind(403, ErrorKind::PermissionDenied));
            case!($double, a_404_is_not_found = error_kind(404, ErrorKind::NotFound));
            case!($double, a_409_is_a_conflict = error_kind(409, ErrorKind::Conflict));
            case!($double, a_429_is_rate_limited = error_kind(429, ErrorKind::RateLimited));
            case!($double, a_503_is_unavailable = error_kind(503, ErrorKind::Unavailable));
        }
    )+};
}

conformance! {
    apigee => common::apigee::Apigee,
}

mod cases {
    use super::*;

    const UNKNOWN_APP: &str = "ApiKeyRotator_NoSuchApp_Conformance";

    async fn stored(env: &Env, double: &dyn IssuerDouble, app: &str) -> Vec<StoredKey> {
        double.stored_keys(&env.state().await, app)
    }

    fn find<'a>(keys: &'a [IssuedKey], key: &str) -> Option<&'a IssuedKey> {
        keys.iter().find(|k| k.key.expose() == key)
    }

    fn status_word(s: AssociationStatus) -> &'static str {
        match s {
            AssociationStatus::Approved => "approved",
            AssociationStatus::Pending => "pending",
            AssociationStatus::Revoked => "revoked",
        }
    }

    /// The issuer's view of a key is the double's: status, products and their states, mark.
    fn assert_same(issued: &IssuedKey, stored: &StoredKey) {
        assert_eq!(issued.key.expose(), stored.key);
        assert_eq!(issued.approved, stored.approved, "{issued:?} vs {stored:?}");
        let products: Vec<(String, String)> = issued
            .api_products
            .iter()
            .map(|a| (a.product.clone(), status_word(a.status).to_string()))
            .collect();
        assert_eq!(products, stored.products, "{issued:?}");
        assert_eq!(
            issued.unfinished,
            stored.mark == Mark::Unfinished,
            "{issued:?}"
        );
        assert_eq!(
            issued.made_by_rotator,
            stored.mark != Mark::None,
            "{issued:?}"
        );
        assert_eq!(issued.revoked, stored.revoked, "{issued:?}");
    }

    /// The error names no full key (rule 2): at most its last four characters.
    fn assert_no_key(e: &apikey_rotator::error::Error, key: &str) {
        assert!(
            !e.to_string().contains(key),
            "the error quotes the key: {e}"
        );
    }

    /// Every key of the app, as the double holds them; listing writes nothing.
    pub async fn lists_keys(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        for (app, product) in [
            double.app_with_auto_product(),
            double.app_with_manual_product(),
        ] {
            let stored = stored(&env, double, app).await;
            assert!(
                stored.len() >= 2,
                "the demo gives {app} two keys: {stored:?}"
            );
            let listed = issuer
                .list_keys(&call(), app)
                .await
                .expect("the app's keys");
            assert_eq!(listed.len(), stored.len(), "{listed:?}");
            for s in &stored {
                let issued = find(&listed, &s.key).expect("every stored key is listed");
                assert_same(issued, s);
                assert!(issued.is_approved_for(product), "{issued:?}");
                assert!(!issued.made_by_rotator && !issued.unfinished);
                assert!(issued.issued_at.is_some(), "{issued:?}");
            }
            // The demo's older key expired: times are read, not defaulted.
            let now = OffsetDateTime::now_utc();
            assert!(
                listed.iter().any(|k| k.expires_at.is_some_and(|t| t < now)),
                "{listed:?}"
            );
        }
        assert_eq!(env.writes().await, Vec::<serde_json::Value>::new());
    }

    /// A new key, with its lifetime, complete: approved, approved for the product (after an
    /// approval when the product asks for one), finished; the other keys untouched.
    pub async fn creates_with_products(double: &dyn IssuerDouble, manual: bool) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = if manual {
            double.app_with_manual_product()
        } else {
            double.app_with_auto_product()
        };
        let before = stored(&env, double, app).await;
        let key = generate_key();
        // A manual product's key never expires here; the auto one lives 90 days.
        let lifetime = (!manual).then(|| Duration::days(90));
        let created = issuer
            .create_key(&call(), app, &key, lifetime, &[product.to_string()], None)
            .await
            .expect("the key is created");
        assert_eq!(created.key, key);
        assert!(
            created.approved && created.is_approved_for(product),
            "{created:?}"
        );
        assert!(
            !created.unfinished && created.made_by_rotator,
            "{created:?}"
        );
        match lifetime {
            None => assert_eq!(created.expires_at, None),
            Some(l) => {
                let issued = created.issued_at.expect("an issue time");
                let expires = created.expires_at.expect("an expiry");
                assert!(
                    (expires - issued - l).abs() < Duration::minutes(5),
                    "{created:?}"
                );
            }
        }
        let after = stored(&env, double, app).await;
        let new = after
            .iter()
            .find(|s| s.key == key.expose())
            .expect("stored");
        assert!(new.approved);
        assert_eq!(
            new.products,
            [(product.to_string(), "approved".to_string())]
        );
        assert_eq!(new.mark, Mark::ProductsAttached);
        let others: Vec<&StoredKey> = after.iter().filter(|s| s.key != key.expose()).collect();
        assert_eq!(
            others,
            before.iter().collect::<Vec<_>>(),
            "other keys are left alone"
        );
        let listed = issuer.list_keys(&call(), app).await.unwrap();
        assert_same(find(&listed, key.expose()).expect("listed"), new);
    }

    /// An app the API manager does not know, and a key the app does not have.
    pub async fn not_found(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let e = issuer.list_keys(&call(), UNKNOWN_APP).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let keys_before = env.all_keys().await;
        let key = generate_key();
        let (app, product) = double.app_with_auto_product();
        let e = issuer
            .create_key(
                &call(),
                UNKNOWN_APP,
                &key,
                None,
                &[product.to_string()],
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_no_key(&e, key.expose());
        assert_eq!(env.all_keys().await, keys_before, "nothing was created");
        let e = issuer
            .finish_key(&call(), app, &key, &[product.to_string()])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_no_key(&e, key.expose());
    }

    /// A creation the API manager refuses: the refusal's kind, and no key.
    pub async fn refused_creation(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_auto_product();
        let before = stored(&env, double, app).await;
        env.add_fault(&double.fault(Step::Create, 403)).await;
        let key = generate_key();
        let e = issuer
            .create_key(&call(), app, &key, None, &[product.to_string()], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert_no_key(&e, key.expose());
        env.clear_faults().await;
        assert_eq!(stored(&env, double, app).await, before);
    }

    /// The creation is applied but its answer never arrives: the issuer finds the key it made
    /// instead of making a second one, and finishes it.
    pub async fn lost_creation_answer(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_auto_product();
        let before = stored(&env, double, app).await;
        let mut lost = double.fault(Step::Create, 503);
        lost["kind"] = "lost".into();
        lost["times"] = 1.into();
        env.add_fault(&lost).await;
        let key = generate_key();
        let created = issuer
            .create_key(&call(), app, &key, None, &[product.to_string()], None)
            .await
            .expect("the key is created once");
        assert!(created.is_approved_for(product), "{created:?}");
        let after = stored(&env, double, app).await;
        assert_eq!(after.len(), before.len() + 1, "one new key: {after:?}");
        let new = after
            .iter()
            .find(|s| s.key == key.expose())
            .expect("stored");
        assert_eq!(new.mark, Mark::ProductsAttached);
        let lost_answers = env
            .requests()
            .await
            .into_iter()
            .filter(|r| r["service"] == double.service() && r["status"].is_null())
            .count();
        assert_eq!(lost_answers, 1, "the answer to the creation was lost");
    }

    /// A renewal that fails after the key was created removes the key again.
    pub async fn failed_renewal_is_deleted(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_auto_product();
        let before = stored(&env, double, app).await;
        env.add_fault(&double.fault(Step::AttachProducts, 403))
            .await;
        let key = generate_key();
        let e = issuer
            .create_key(&call(), app, &key, None, &[product.to_string()], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert_no_key(&e, key.expose());
        env.clear_faults().await;
        assert_eq!(stored(&env, double, app).await, before, "the key is gone");
        let listed = issuer.list_keys(&call(), app).await.unwrap();
        assert!(find(&listed, key.expose()).is_none());
    }

    /// Creates a key whose renewal breaks at `step` and whose clean-up fails too; returns the
    /// key as the double keeps it.
    async fn half_made(
        env: &Env,
        double: &dyn IssuerDouble,
        app: &str,
        product: &str,
        step: Step,
    ) -> (apikey_rotator::secret::ApiKey, StoredKey) {
        let issuer = double.issuer(env);
        env.add_fault(&double.fault(step, 403)).await;
        env.add_fault(&double.fault(Step::Delete, 403)).await;
        let key = generate_key();
        let e = issuer
            .create_key(&call(), app, &key, None, &[product.to_string()], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert_no_key(&e, key.expose());
        env.clear_faults().await;
        let left = stored(env, double, app)
            .await
            .into_iter()
            .find(|s| s.key == key.expose())
            .expect("the key stays when its clean-up fails");
        (key, left)
    }

    /// Then the next run finishes it: complete, marked so, approved for the product.
    async fn finishes(
        double: &dyn IssuerDouble,
        env: &Env,
        app: &str,
        product: &str,
        key: &apikey_rotator::secret::ApiKey,
    ) {
        let issuer = double.issuer(env);
        let done = issuer
            .finish_key(&call(), app, key, &[product.to_string()])
            .await
            .expect("the half-made key is finished");
        assert!(done.approved && done.is_approved_for(product), "{done:?}");
        assert!(!done.unfinished && done.made_by_rotator);
        let s = stored(env, double, app)
            .await
            .into_iter()
            .find(|s| s.key == key.expose())
            .unwrap();
        assert_eq!(s.mark, Mark::ProductsAttached);
        assert_eq!(s.products, [(product.to_string(), "approved".to_string())]);
        assert_same(&done, &s);
    }

    /// Broken before its products were attached: marked unfinished (never current), listed
    /// so, and finished by `finish_key`.
    pub async fn left_unfinished(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let (app, product) = double.app_with_auto_product();
        let (key, left) = half_made(&env, double, app, product, Step::AttachProducts).await;
        assert_eq!(left.mark, Mark::Unfinished);
        assert!(left.products.is_empty(), "{left:?}");
        let listed = double.issuer(&env).list_keys(&call(), app).await.unwrap();
        let issued = find(&listed, key.expose()).expect("listed");
        assert!(issued.unfinished && issued.made_by_rotator, "{issued:?}");
        assert!(!issued.is_approved_for(product));
        assert_same(issued, &left);
        finishes(double, &env, app, product, &key).await;
    }

    /// Broken after its products were attached but before the manual product approved it:
    /// marked products-attached, its association pending, and approved by `finish_key`.
    pub async fn left_unapproved(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let (app, product) = double.app_with_manual_product();
        let (key, left) = half_made(&env, double, app, product, Step::Approve).await;
        assert_eq!(left.mark, Mark::ProductsAttached);
        assert_eq!(
            left.products,
            [(product.to_string(), "pending".to_string())]
        );
        let listed = double.issuer(&env).list_keys(&call(), app).await.unwrap();
        let issued = find(&listed, key.expose()).expect("listed");
        assert!(!issued.unfinished && issued.made_by_rotator, "{issued:?}");
        assert!(!issued.is_approved_for(product), "{issued:?}");
        assert_same(issued, &left);
        finishes(double, &env, app, product, &key).await;
    }

    /// `delete_key` removes the key, and only it.
    pub async fn deletes_a_key(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_auto_product();
        let before = stored(&env, double, app).await;
        let key = generate_key();
        issuer
            .create_key(&call(), app, &key, None, &[product.to_string()], None)
            .await
            .unwrap();
        issuer
            .delete_key(&call(), app, &key)
            .await
            .expect("deleted");
        assert_eq!(stored(&env, double, app).await, before);
    }

    /// A key the app already has, complete: what a renewal replaces.
    async fn existing_key(double: &dyn IssuerDouble, env: &Env, app: &str) -> IssuedKey {
        let listed = double.issuer(env).list_keys(&call(), app).await.unwrap();
        let now = OffsetDateTime::now_utc();
        apikey_rotator::toolkit::policy::current_key(&listed, now)
            .expect("the demo app has a current key")
            .clone()
    }

    /// A key created to replace another carries that key's fingerprint from its creation on,
    /// as the API manager stores it; it survives the steps that finish the key.
    pub async fn records_what_it_replaces(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_manual_product();
        let old = existing_key(double, &env, app).await;
        let key = generate_key();
        let created = issuer
            .create_key(
                &call(),
                app,
                &key,
                None,
                &[product.to_string()],
                Some(&old.key),
            )
            .await
            .expect("created");
        let fp = fingerprint(&old.key);
        assert_eq!(fp.len(), 16);
        assert_eq!(created.replaces.as_deref(), Some(fp.as_str()));
        let stored_new = stored(&env, double, app)
            .await
            .into_iter()
            .find(|s| s.key == key.expose())
            .unwrap();
        assert!(
            stored_new.attributes.iter().any(|(_, v)| *v == fp),
            "{stored_new:?}"
        );
        assert!(
            !stored_new
                .attributes
                .iter()
                .any(|(_, v)| v.contains(old.key.expose())),
            "the key itself is never stored as a mark"
        );
        let listed = issuer.list_keys(&call(), app).await.unwrap();
        let new = find(&listed, key.expose()).unwrap();
        assert_eq!(new.replaces.as_deref(), Some(fp.as_str()));
        assert_eq!(find(&listed, old.key.expose()).unwrap().replaces, None);
        assert_eq!(
            apikey_rotator::toolkit::policy::successor(&old, &listed).map(|s| s.key.clone()),
            Some(key)
        );
    }

    /// `revoke_key` is the API manager's revoke: the key stays, revoked, with its products;
    /// repeating it changes nothing; `reactivate_key` approves it again. Nothing is deleted.
    pub async fn revokes_and_reactivates(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_auto_product();
        let old = existing_key(double, &env, app).await;
        let before = stored(&env, double, app)
            .await
            .into_iter()
            .find(|s| s.key == old.key.expose())
            .unwrap();
        assert!(!before.revoked && before.approved);
        env.clear_requests().await;
        let revoked = issuer
            .revoke_key(&call(), app, &old.key)
            .await
            .expect("revoked");
        assert!(revoked.revoked && !revoked.approved, "{revoked:?}");
        let after = stored(&env, double, app)
            .await
            .into_iter()
            .find(|s| s.key == old.key.expose())
            .expect("a revoked key is never deleted");
        assert!(after.revoked && !after.approved, "{after:?}");
        assert_eq!(after.products, before.products, "its products are kept");
        assert_same(&revoked, &after);
        let listed = issuer.list_keys(&call(), app).await.unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(
            apikey_rotator::toolkit::policy::current_key(&listed, now)
                .is_none_or(|c| c.key != old.key),
            "a revoked key is never current"
        );
        // Idempotent.
        let again = issuer.revoke_key(&call(), app, &old.key).await.unwrap();
        assert!(again.revoked);
        let log = env.requests().await;
        let ours: Vec<&serde_json::Value> = log
            .iter()
            .filter(|r| r["service"] == double.service())
            .collect();
        assert!(ours.iter().all(|r| r["method"] != "DELETE"), "{ours:?}");
        assert_eq!(
            ours.iter()
                .filter(|r| r["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("action=revoke")))
                .count(),
            2,
            "{ours:?}"
        );
        let back = issuer
            .reactivate_key(&call(), app, &old.key)
            .await
            .expect("reactivated");
        assert!(back.approved && !back.revoked, "{back:?}");
        assert!(back.is_approved_for(product), "{back:?}");
        let restored = stored(&env, double, app)
            .await
            .into_iter()
            .find(|s| s.key == old.key.expose())
            .unwrap();
        assert_eq!(restored, before, "reactivated as it was");
    }

    /// `set_marks` sets the pin and the withdrawal (and removes them), every other attribute
    /// of the key (its creation marks among them) kept as stored.
    pub async fn sets_marks(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, product) = double.app_with_auto_product();
        let old = existing_key(double, &env, app).await;
        let key = generate_key();
        issuer
            .create_key(
                &call(),
                app,
                &key,
                None,
                &[product.to_string()],
                Some(&old.key),
            )
            .await
            .unwrap();
        async fn stored_key(
            env: &Env,
            double: &dyn IssuerDouble,
            app: &str,
            key: &apikey_rotator::secret::ApiKey,
        ) -> StoredKey {
            stored(env, double, app)
                .await
                .into_iter()
                .find(|s| s.key == key.expose())
                .unwrap()
        }
        let original = stored_key(&env, double, app, &key).await;
        let pinned_at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let marked = issuer
            .set_marks(
                &call(),
                app,
                &key,
                KeyMarks {
                    pinned_at: Some(pinned_at),
                    withdrawn_at: None,
                    ..KeyMarks::default()
                },
            )
            .await
            .expect("marked");
        assert_eq!(marked.pinned_at, Some(pinned_at));
        assert_eq!(marked.withdrawn_at, None);
        let pinned = stored_key(&env, double, app, &key).await;
        for a in &original.attributes {
            assert!(pinned.attributes.contains(a), "{a:?} kept: {pinned:?}");
        }
        assert_eq!(pinned.attributes.len(), original.attributes.len() + 1);
        assert_eq!(
            (&pinned.products, pinned.approved, pinned.mark),
            (&original.products, original.approved, original.mark)
        );
        let withdrawn_at = pinned_at + Duration::hours(1);
        let marked = issuer
            .set_marks(
                &call(),
                app,
                &key,
                KeyMarks {
                    pinned_at: None,
                    withdrawn_at: Some(withdrawn_at),
                    ..KeyMarks::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (marked.pinned_at, marked.withdrawn_at),
            (None, Some(withdrawn_at))
        );
        let listed = issuer.list_keys(&call(), app).await.unwrap();
        let read = find(&listed, key.expose()).unwrap();
        assert_eq!(
            (read.pinned_at, read.withdrawn_at),
            (None, Some(withdrawn_at))
        );
        assert!(read.replaces.is_some() && read.made_by_rotator);
        issuer
            .set_marks(&call(), app, &key, KeyMarks::default())
            .await
            .unwrap();
        assert_eq!(
            stored_key(&env, double, app, &key).await,
            original,
            "back as created"
        );
        let e = issuer
            .set_marks(&call(), app, &generate_key(), KeyMarks::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    /// Revoking a key the app does not have is not found, and names no key.
    pub async fn revoke_unknown_key(double: &dyn IssuerDouble) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, _) = double.app_with_auto_product();
        let before = stored(&env, double, app).await;
        let key = generate_key();
        for e in [
            issuer.revoke_key(&call(), app, &key).await.unwrap_err(),
            issuer.reactivate_key(&call(), app, &key).await.unwrap_err(),
            issuer
                .revoke_key(&call(), UNKNOWN_APP, &key)
                .await
                .unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
            assert_no_key(&e, key.expose());
        }
        assert_eq!(stored(&env, double, app).await, before);
    }

    /// The API manager answering `status` to a read is an error of `kind` (after the retries
    /// the shared policy allows for a temporary one).
    pub async fn error_kind(double: &dyn IssuerDouble, status: u16, kind: ErrorKind) {
        let env = Env::start().await;
        let issuer = double.issuer(&env);
        let (app, _) = double.app_with_auto_product();
        env.add_fault(&double.fault(Step::List, status)).await;
        let e = issuer.list_keys(&call(), app).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert_eq!(e.status(), Some(status), "{e}");
        assert_eq!(
            e.is_temporary(),
            matches!(kind, ErrorKind::RateLimited | ErrorKind::Unavailable),
            "{e}"
        );
        let answered: Vec<_> = env
            .requests()
            .await
            .into_iter()
            .filter(|r| r["service"] == double.service() && r["status"] == status)
            .collect();
        assert!(!answered.is_empty(), "the fault was met");
    }
}

/// The retry policy and no deadline: what one call of the suite runs under.
fn call() -> Call {
    Call::new(std::sync::Arc::new(RetryPolicy::default()), None)
}
