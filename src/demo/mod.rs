//! `sealgate demo`: sealgate with an embedded development IdP and a demo API.
//! NOT FOR PRODUCTION: the development IdP approves anyone who types a name.

pub mod api;
pub mod idp;
