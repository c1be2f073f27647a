//! The payout proxy. So far: the Bank 131 client ([`bank131`]).
#![forbid(unsafe_code)]
