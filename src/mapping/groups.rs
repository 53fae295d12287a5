//! Groups of any kind, held without knowing the kind: [`AppsMapping`](super::AppsMapping) keeps
//! one [`Groups`] per kind, each a `Vec` of that kind's [`Group`] type.
//!
//! What the envelope does with every kind alike (count targets, list API-manager apps, keep one
//! app's targets, compare, append another setting's groups) goes through [`Group`]; everything
//! else is the kind's, which reads its groups back with [`AppsMapping::groups`](super::AppsMapping::groups).

use std::any::Any;
use std::fmt;

/// One group of a kind's mapping section: one container's address and the entries the mapping
/// names in it (a vault and its secrets, a site and its settings, an application API and its
/// one app name).
pub trait Group: Clone + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The API-manager app of each entry, in entry order; one per target.
    fn apim_app_names(&self) -> Vec<&str>;

    /// The group with only the entries of `apim_app_name`; `None` when none is left.
    fn only_app(&self, apim_app_name: &str) -> Option<Self>;
}

/// The groups of one kind, type-erased (implemented for `Vec<G>` of every [`Group`] `G`).
pub(crate) trait Groups: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn clone_box(&self) -> Box<dyn Groups>;
    fn eq_box(&self, other: &dyn Groups) -> bool;
    fn fmt_box(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn apim_app_names(&self) -> Vec<&str>;
    fn is_empty(&self) -> bool;
    fn only_app(&self, apim_app_name: &str) -> Box<dyn Groups>;
    /// Appends `other`, which holds groups of the same kind.
    fn append(&mut self, other: Box<dyn Groups>);
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<G: Group> Groups for Vec<G> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn clone_box(&self) -> Box<dyn Groups> {
        Box::new(self.clone())
    }

    fn eq_box(&self, other: &dyn Groups) -> bool {
        other.as_any().downcast_ref::<Vec<G>>() == Some(self)
    }

    fn fmt_box(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }

    fn apim_app_names(&self) -> Vec<&str> {
        self.iter().flat_map(Group::apim_app_names).collect()
    }

    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }

    fn only_app(&self, apim_app_name: &str) -> Box<dyn Groups> {
        Box::new(
            self.iter()
                .filter_map(|g| g.only_app(apim_app_name))
                .collect::<Vec<G>>(),
        )
    }

    fn append(&mut self, other: Box<dyn Groups>) {
        match other.into_any().downcast::<Vec<G>>() {
            Ok(mut other) => Vec::append(self, &mut other),
            Err(_) => unreachable!("groups of one kind are appended to groups of another"),
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl Clone for Box<dyn Groups> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl fmt::Debug for dyn Groups + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_box(f)
    }
}
