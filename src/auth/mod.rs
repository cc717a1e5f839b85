//! Signing people in through an identity provider (see [`oidc`]).

pub mod oidc;
