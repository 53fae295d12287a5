//! The registry: every target kind, once. Adding a kind is adding it here (and its sections to
//! [`SECTIONS`]); the mapping's walk, merge and schema and the planner find it through this list.

use super::Kind;

/// Every target kind, in the order the plan lists their containers (and so the report its
/// entries, and [`AppsMapping::apim_app_names`](crate::mapping::AppsMapping::apim_app_names)
/// the apps).
pub static KINDS: [&dyn Kind; 4] = [
    &super::key_vault::KIND,
    &super::application_api::KIND,
    &super::app_settings::KIND,
    &super::app_configuration::KIND,
];

/// Every kind's mapping sections, in the order messages list them (`unknown field; expected
/// ...`); each is one of [`KINDS`]' sections (a test checks), a new kind's go last.
pub const SECTIONS: [&str; 6] = [
    "keyVault",
    "applicationApis",
    "appConfiguration",
    "functionApps",
    "webApps",
    "staticWebApps",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every section is listed once and owned by exactly one kind.
    #[test]
    fn sections_are_the_kinds_sections() {
        let mut owned: Vec<&str> = KINDS.iter().flat_map(|k| k.sections().to_vec()).collect();
        let mut listed = SECTIONS.to_vec();
        owned.sort_unstable();
        listed.sort_unstable();
        assert_eq!(owned, listed);
        listed.dedup();
        assert_eq!(listed.len(), SECTIONS.len(), "a section is listed twice");
    }
}
