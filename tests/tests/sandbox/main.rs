//! The Bank 131 sandbox over real HTTP: signatures, both spellings, the lifecycle with signed
//! webhooks, magic inputs, faults, the journal's card-data boundary, the control API and the
//! binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod helpers;

mod api;
mod binary;
mod control;
mod faults;
mod journal;
mod lifecycle;
mod magic;
