//! The one list of issuers. The sealed details name the issuer by `issuer.type`; this list maps
//! each type to its config (serde reads it, [`IssuerConfig`] checks it and builds the issuer).
//! Adding an issuer is one line here and its folder, `toolkit/<issuer>/`.

use super::issuer::IssuerConfig;
use serde::Deserialize;

/// Declares [`IssuerDetails`] (one variant per issuer, tagged by `type`), its
/// [`IssuerDetails::config`], [`fields_error`] and [`TYPES`] from one list.
macro_rules! issuers {
    ($($(#[$doc:meta])* $type_name:literal => $variant:ident($config:ty),)+) => {
        /// Which API manager issues the keys: the `issuer` object of the sealed details.
        /// Non-exhaustive: code outside the crate that takes one issuer's config out must say
        /// what it does with the others, so adding an issuer breaks no test elsewhere.
        #[derive(Debug, Deserialize)]
        #[serde(tag = "type")]
        #[non_exhaustive]
        pub enum IssuerDetails {
            $($(#[$doc])* #[serde(rename = $type_name)] $variant($config),)+
        }

        impl IssuerDetails {
            /// The issuer's config, whichever it is.
            pub fn config(&self) -> &dyn IssuerConfig {
                match self {
                    $(Self::$variant(c) => c,)+
                }
            }
        }

        /// Where and why `fields` (the `issuer` object without `type`) are not issuer
        /// `type_name`'s config; `None` when they are, or no issuer has that type. An
        /// internally tagged enum loses the path inside it, so serde's error is found again
        /// by reading the fields on their own.
        pub(crate) fn fields_error(
            type_name: &str,
            fields: &serde_json::Value,
        ) -> Option<serde_path_to_error::Error<serde_json::Error>> {
            match type_name {
                $($type_name => serde_path_to_error::deserialize::<_, $config>(fields).err(),)+
                _ => None,
            }
        }

        /// Every `issuer.type` the sealed details may name.
        pub const TYPES: &[&str] = &[$($type_name),+];
    };
}

issuers! {
    /// Apigee X or hybrid, through the management API with a Google service account.
    "apigeeX" => ApigeeX(super::apigee::ApigeeXConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each type the list names reads its own config: its fields are checked by that issuer.
    #[test]
    fn each_type_reads_its_own_fields() {
        assert!(TYPES.contains(&"apigeeX"), "{TYPES:?}");
        for t in TYPES {
            let e = fields_error(t, &serde_json::json!({})).expect("an empty config is refused");
            assert!(e.to_string().starts_with("missing field"), "{t}: {e}");
        }
        assert!(fields_error("apigeeEdge", &serde_json::json!({})).is_none());
    }
}
