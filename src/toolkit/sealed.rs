//! Sealed company details (placeholder signature; implemented in the toolkit work).

use crate::error::{Error, Result};

/// Seals `plaintext` (the company-details JSON) under `uuid`, returning the `COMPANYDETAILS` value.
pub fn seal(uuid: &str, plaintext: &[u8]) -> Result<String> {
    let _ = (uuid, plaintext);
    Err(Error::unexpected("sealing is not implemented yet"))
}

/// Opens (interim).
pub fn open(uuid: &str, sealed: &str) -> Result<()> {
    let _ = (uuid, sealed);
    Err(Error::unexpected("interim"))
}
