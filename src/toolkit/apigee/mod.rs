//! The Apigee X / hybrid issuer, through its management API
//! (`tests/fixtures/reference/apigee/`): one method per REST call, times as int64 strings in
//! milliseconds, `"-1"` meaning never.
//!
//! Key URLs carry the consumer key in their path, so every error on them is built without the
//! URL and scrubbed of the key before it leaves this module.
//!
//! A renewal is three kinds of calls, each as the discovery document defines it
//! (`tests/fixtures/reference/apigee/apigee-x-v1.discovery-excerpt.methods.txt`):
//! `keys.create` (the key starts approved, without products, carrying the
//! [`STATE_ATTRIBUTE`] mark [`UNFINISHED`]), `keys.updateDeveloperAppKey` (adds the products
//! and sets the mark to [`PRODUCTS_ATTACHED`]; a product with `approvalType: manual` leaves
//! its association `pending`), and
//! `keys.apiproducts.updateDeveloperAppKeyApiProduct?action=approve` for each pending
//! association. The mark is a key attribute (`GoogleCloudApigeeV1Attribute` on the key),
//! written with the key itself and with its products, so a key whose renewal was interrupted at
//! any step is recognised on the next run: without products it is [`UNFINISHED`]; with them, a
//! pending association tells the approval is missing.
//!
//! Files: [`config`] (Apigee's part of the sealed details), [`auth`] (the service-account
//! token), [`client`] (the REST calls and the [`Issuer`](crate::toolkit::Issuer)), [`error`]
//! (Google's error bodies to the domain error).

pub mod auth;
pub mod client;
pub mod config;
pub mod error;

pub use client::{ApigeeX, PRODUCTS_ATTACHED, STATE_ATTRIBUTE, UNFINISHED};
pub use config::ApigeeXConfig;
pub use error::parse_error;
