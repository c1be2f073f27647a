//! Rate limits, and the tallies that turn floods of refusals into one audit event per interval.
//!
//! Why: tokenize answers "is this the card you already have?" (the same token, 200 instead of
//! 201), so a client allowed to tokenize and read can search for a stored card number one guess
//! at a time (docs/ARCHITECTURE.md §9.1). Limits per client on tokenize (new and known cards alike, so the
//! limit itself tells nothing), read and detokenize bound that search; failed authentications
//! are limited per source address. Each refusal is counted, not written: a flood must not cost
//! one durable audit write per request (§9.5). The counts go to the audit log once per
//! `limits.report_interval_seconds` (and at shutdown) as one `rate.limited` event per client and
//! one `auth.fail` event per reason and address.
//!
//! The limiters are `governor`'s GCRA (a token bucket without a timer): one atomic state per key,
//! checked without taking a lock on the hot path.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::auth::ClientRecord;
use crate::token::ClientId;

/// What a limit applies to.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Operation {
    /// `POST /v1/tokens`, whether the card is new or known.
    Tokenize,
    /// `GET /v1/tokens/{token}`.
    Read,
    /// `POST /v1/tokens/{token}/detokenize`.
    Detokenize,
    /// Requests that fail authentication, per source address.
    Unauthenticated,
    /// Card submissions through a collect session's form, per source address (the form is
    /// public: its only caller identity is the address).
    CollectSubmit,
    /// Card form page loads, per source address.
    CollectPage,
}

impl Operation {
    /// Every operation, in metric order.
    pub const ALL: [Self; 6] = [
        Self::Tokenize,
        Self::Read,
        Self::Detokenize,
        Self::Unauthenticated,
        Self::CollectSubmit,
        Self::CollectPage,
    ];

    /// The name in metrics and audit details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokenize => "tokenize",
            Self::Read => "read",
            Self::Detokenize => "detokenize",
            Self::Unauthenticated => "unauthenticated",
            Self::CollectSubmit => "collect_submit",
            Self::CollectPage => "collect_page",
        }
    }

    /// Position in [`Operation::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Tokenize => 0,
            Self::Read => 1,
            Self::Detokenize => 2,
            Self::Unauthenticated => 3,
            Self::CollectSubmit => 4,
            Self::CollectPage => 5,
        }
    }
}

/// `[limits]`: rates are sustained requests per second, bursts how many may come at once.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Tokenize requests per second per client.
    pub tokenize_per_second: u32,
    /// Tokenize burst per client.
    pub tokenize_burst: u32,
    /// Read requests per second per client.
    pub read_per_second: u32,
    /// Read burst per client.
    pub read_burst: u32,
    /// Detokenize requests per second per client.
    pub detokenize_per_second: u32,
    /// Detokenize burst per client.
    pub detokenize_burst: u32,
    /// Failed authentications per second per source address (beyond: 429, not 401).
    pub unauthenticated_per_second: u32,
    /// Failed-authentication burst per source address.
    pub unauthenticated_burst: u32,
    /// Card submissions through collect forms per second per source address.
    pub collect_submit_per_second: u32,
    /// Collect submission burst per source address.
    pub collect_submit_burst: u32,
    /// Card form page loads (`GET /collect/{id}`) per second per source address.
    pub collect_page_per_second: u32,
    /// Card form page load burst per source address.
    pub collect_page_burst: u32,
    /// How often refusals are written to the audit log as aggregated events.
    pub report_interval_seconds: u64,
    /// Source addresses tracked at once; beyond, new addresses share one bucket and one tally.
    pub max_tracked_addresses: usize,
    /// Proxies (load balancers, TLS terminators) in front of the vault, as addresses or
    /// networks: from these peers the source address is read from `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            tokenize_per_second: 10,
            tokenize_burst: 100,
            read_per_second: 100,
            read_burst: 500,
            detokenize_per_second: 100,
            detokenize_burst: 500,
            unauthenticated_per_second: 5,
            unauthenticated_burst: 20,
            collect_submit_per_second: 1,
            collect_submit_burst: 10,
            collect_page_per_second: 5,
            collect_page_burst: 50,
            report_interval_seconds: 60,
            max_tracked_addresses: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl LimitsConfig {
    /// Checks ranges.
    ///
    /// # Errors
    ///
    /// A zero rate, burst, interval or address bound.
    pub fn validate(&self) -> Result<(), &'static str> {
        let rates = [
            self.tokenize_per_second,
            self.tokenize_burst,
            self.read_per_second,
            self.read_burst,
            self.detokenize_per_second,
            self.detokenize_burst,
            self.unauthenticated_per_second,
            self.unauthenticated_burst,
            self.collect_submit_per_second,
            self.collect_submit_burst,
            self.collect_page_per_second,
            self.collect_page_burst,
        ];
        if rates.contains(&0) {
            return Err("every limits.*_per_second and limits.*_burst must be at least 1");
        }
        if self.report_interval_seconds == 0 || self.max_tracked_addresses == 0 {
            return Err(
                "limits.report_interval_seconds and limits.max_tracked_addresses must be at least 1",
            );
        }
        crate::http::source::TrustedProxies::parse(&self.trusted_proxies)?;
        Ok(())
    }

    fn quota(per_second: u32, burst: u32) -> Quota {
        let one = NonZeroU32::MIN;
        Quota::per_second(NonZeroU32::new(per_second).unwrap_or(one))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
    }
}

/// Why an authentication failed, as tallied.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub enum FailureReason {
    /// No `Authorization: Bearer` key.
    MissingKey,
    /// A key no client has.
    UnknownKey,
    /// A client row whose MAC does not verify, or a revoked client's row restored as active:
    /// written or edited outside the vault.
    TamperedClient,
    /// A collect form submission for no open session of that id, or with a wrong secret or
    /// origin.
    CollectRefused,
}

impl FailureReason {
    /// The text in the audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingKey => "missing API key",
            Self::UnknownKey => "unknown API key",
            Self::TamperedClient => "client row failed its integrity check",
            Self::CollectRefused => "collect submission refused",
        }
    }
}

/// Refusals of one client in one interval.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ClientRefusals {
    /// The client's tenant.
    pub tenant: String,
    /// Refusals per operation.
    pub counts: BTreeMap<Operation, u64>,
}

/// What one interval's refusals add up to.
#[derive(Debug, Default)]
pub struct Report {
    /// Per limited client.
    pub clients: BTreeMap<ClientId, ClientRefusals>,
    /// Failed authentications per (reason, source address; `None` for unknown or overflow).
    pub failures: BTreeMap<(FailureReason, Option<IpAddr>), u64>,
}

impl Report {
    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.failures.is_empty()
    }
}

/// The limiters and tallies of one vault process.
#[derive(Debug)]
pub struct Limiter {
    tokenize: DefaultKeyedRateLimiter<ClientId>,
    read: DefaultKeyedRateLimiter<ClientId>,
    detokenize: DefaultKeyedRateLimiter<ClientId>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    collect: DefaultKeyedRateLimiter<IpAddr>,
    collect_page: DefaultKeyedRateLimiter<IpAddr>,
    max_addresses: usize,
    clock: DefaultClock,
    tally: Mutex<Report>,
    /// Audited refusals per collect session this interval (see [`Limiter::audits_refusal`]).
    session_refusals: Mutex<HashMap<String, u32>>,
}

/// Refusals of one collect session audited one by one per interval; the rest are counted into
/// the interval's tally. A session id is no secret (it is in the form's address), so without
/// this bound anyone holding one could make the vault write an audit row per request.
pub const AUDITED_REFUSALS_PER_SESSION: u32 = 20;

/// The key every address beyond `max_tracked_addresses` shares.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

impl Limiter {
    /// Limiters with the configured quotas.
    pub fn new(config: &LimitsConfig) -> Self {
        let q = LimitsConfig::quota;
        Self {
            tokenize: DefaultKeyedRateLimiter::dashmap(q(
                config.tokenize_per_second,
                config.tokenize_burst,
            )),
            read: DefaultKeyedRateLimiter::dashmap(q(config.read_per_second, config.read_burst)),
            detokenize: DefaultKeyedRateLimiter::dashmap(q(
                config.detokenize_per_second,
                config.detokenize_burst,
            )),
            addresses: DefaultKeyedRateLimiter::dashmap(q(
                config.unauthenticated_per_second,
                config.unauthenticated_burst,
            )),
            collect: DefaultKeyedRateLimiter::dashmap(q(
                config.collect_submit_per_second,
                config.collect_submit_burst,
            )),
            collect_page: DefaultKeyedRateLimiter::dashmap(q(
                config.collect_page_per_second,
                config.collect_page_burst,
            )),
            max_addresses: config.max_tracked_addresses,
            clock: DefaultClock::default(),
            tally: Mutex::new(Report::default()),
            session_refusals: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one `operation` by `client`, or says how long to wait (and counts the refusal).
    ///
    /// # Errors
    ///
    /// The time until the client may try again.
    pub fn check_client(
        &self,
        operation: Operation,
        client: &ClientRecord,
    ) -> Result<(), Duration> {
        let limiter = match operation {
            Operation::Tokenize => &self.tokenize,
            Operation::Read => &self.read,
            Operation::Detokenize => &self.detokenize,
            Operation::Unauthenticated | Operation::CollectSubmit | Operation::CollectPage => {
                return Ok(());
            }
        };
        let Err(not_until) = limiter.check_key(&client.id) else {
            return Ok(());
        };
        let mut tally = self.tally.lock();
        let refusals = tally.clients.entry(client.id.clone()).or_default();
        if refusals.counts.is_empty() {
            tracing::warn!(
                client = %client.id,
                tenant = %client.tenant,
                operation = operation.as_str(),
                "rate limit reached; further refusals this interval are counted, not logged"
            );
            refusals.tenant.clone_from(&client.tenant);
        }
        *refusals.counts.entry(operation).or_default() += 1;
        Err(not_until.wait_time_from(self.clock.now()))
    }

    /// Charges a failed authentication to `addr`'s bucket and, when `reason` is given, counts it
    /// into the interval's tally (a revoked key is audited on its own and passes `None`). Says
    /// whether the address is over its limit (then the caller answers 429 instead of 401).
    ///
    /// # Errors
    ///
    /// The time until the address may fail again.
    pub fn note_failure(
        &self,
        reason: Option<FailureReason>,
        addr: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let key = addr.map(normalize);
        // Past the bound (a flood from very many addresses), they all share one bucket: failing
        // requests get 429 sooner, and a valid key is never limited by this.
        let bucket = match key {
            Some(a) if self.addresses.len() < self.max_addresses => a,
            _ => OVERFLOW,
        };
        if let Some(reason) = reason {
            self.tally(reason, key);
        }
        match self.addresses.check_key(&bucket) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Admits one collect form submission from `addr`, or says how long to wait. Addresses
    /// past `max_tracked_addresses` share one bucket, as for failed authentications.
    ///
    /// # Errors
    ///
    /// The time until the address may submit again.
    pub fn check_collect(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        self.check_address(&self.collect, addr)
    }

    /// Admits one load of a card form page from `addr` (each is a database read, and the
    /// page is public), or says how long to wait.
    ///
    /// # Errors
    ///
    /// The time until the address may load again.
    pub fn check_collect_page(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        self.check_address(&self.collect_page, addr)
    }

    fn check_address(
        &self,
        limiter: &DefaultKeyedRateLimiter<IpAddr>,
        addr: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let bucket = match addr.map(normalize) {
            Some(a) if limiter.len() < self.max_addresses => a,
            _ => OVERFLOW,
        };
        limiter
            .check_key(&bucket)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Takes one of collect session `id`'s audited refusals for this interval, if any is left
    /// (fewer than [`AUDITED_REFUSALS_PER_SESSION`] taken): check and count are one step under
    /// one lock, so concurrent refusals cannot all pass the check before any is counted.
    /// Sessions past `max_tracked_addresses` distinct ones get none: a flood over many ids is
    /// only counted.
    pub fn take_refusal_audit(&self, id: &str) -> bool {
        let mut refusals = self.session_refusals.lock();
        if let Some(n) = refusals.get_mut(id) {
            if *n >= AUDITED_REFUSALS_PER_SESSION {
                return false;
            }
            *n += 1;
            true
        } else if refusals.len() < self.max_addresses {
            refusals.insert(id.to_owned(), 1);
            true
        } else {
            false
        }
    }

    /// Counts a refusal of `client` into the interval's tally without consulting a limiter (a
    /// revoked key used past its address's budget: counted under the client, so the event
    /// names whose key is still in use).
    pub fn count_client(&self, operation: Operation, client: &ClientRecord) {
        let mut tally = self.tally.lock();
        let refusals = tally.clients.entry(client.id.clone()).or_default();
        refusals.tenant.clone_from(&client.tenant);
        *refusals.counts.entry(operation).or_default() += 1;
    }

    /// Puts back counts that could not be written to the audit log, for the next report.
    pub fn restore(&self, unwritten: Report) {
        let mut tally = self.tally.lock();
        for (client, refusals) in unwritten.clients {
            let into = tally.clients.entry(client).or_default();
            into.tenant = refusals.tenant;
            for (op, n) in refusals.counts {
                *into.counts.entry(op).or_default() += n;
            }
        }
        for (key, n) in unwritten.failures {
            *tally.failures.entry(key).or_default() += n;
        }
    }

    /// The tally is bounded like the limiter: past `max_tracked_addresses`, new addresses are
    /// counted together.
    fn tally(&self, reason: FailureReason, key: Option<IpAddr>) {
        let mut tally = self.tally.lock();
        let at_capacity = tally.failures.len() >= self.max_addresses;
        let slot = if at_capacity && !tally.failures.contains_key(&(reason, key)) {
            (reason, None)
        } else {
            (reason, key)
        };
        *tally.failures.entry(slot).or_default() += 1;
    }

    /// Takes the interval's tallies, leaving them empty, and forgets idle limiter state.
    pub fn drain(&self) -> Report {
        for limiter in [&self.tokenize, &self.read, &self.detokenize] {
            limiter.retain_recent();
        }
        self.addresses.retain_recent();
        self.collect.retain_recent();
        self.collect_page.retain_recent();
        self.session_refusals.lock().clear();
        std::mem::take(&mut *self.tally.lock())
    }
}

/// An IPv6 client controls its whole /64: limit the prefix, not each address in it.
fn normalize(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    fn client() -> ClientRecord {
        ClientRecord {
            id: ClientId::generate().unwrap(),
            name: "app".to_owned(),
            tenant: "acme".to_owned(),
            scopes: Scopes::parse("tokens:create").unwrap(),
            key_hash: [1; 32],
            created_at: 0,
            revoked_at: None,
            mac: None,
            cert_sha256: None,
        }
    }

    #[test]
    fn a_sessions_refusals_are_audited_up_to_a_bound_per_interval() {
        let limiter = Limiter::new(&LimitsConfig {
            max_tracked_addresses: 2,
            ..LimitsConfig::default()
        });
        for _ in 0..AUDITED_REFUSALS_PER_SESSION {
            assert!(limiter.take_refusal_audit("cs_a"));
        }
        assert!(
            !limiter.take_refusal_audit("cs_a"),
            "past the bound: counted only"
        );
        assert!(
            limiter.take_refusal_audit("cs_b"),
            "another session has its own"
        );
        assert!(
            !limiter.take_refusal_audit("cs_c"),
            "past the tracked bound: counted only"
        );
        let _ = limiter.drain();
        assert!(limiter.take_refusal_audit("cs_a"), "a new interval");
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_is_tallied_once() {
        let limiter = Limiter::new(&LimitsConfig {
            tokenize_per_second: 1,
            tokenize_burst: 3,
            ..LimitsConfig::default()
        });
        let (a, b) = (client(), client());
        for _ in 0..3 {
            assert!(limiter.check_client(Operation::Tokenize, &a).is_ok());
        }
        let wait = limiter.check_client(Operation::Tokenize, &a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check_client(Operation::Tokenize, &a).is_err());
        // Other clients and other operations are not affected.
        assert!(limiter.check_client(Operation::Tokenize, &b).is_ok());
        assert!(limiter.check_client(Operation::Read, &a).is_ok());
        let report = limiter.drain();
        assert_eq!(report.clients.len(), 1);
        assert_eq!(report.clients[&a.id].counts[&Operation::Tokenize], 2);
        assert!(limiter.drain().is_empty());
    }

    #[test]
    fn failures_are_limited_per_address_and_the_tally_is_bounded() {
        let limiter = Limiter::new(&LimitsConfig {
            unauthenticated_per_second: 1,
            unauthenticated_burst: 2,
            max_tracked_addresses: 3,
            ..LimitsConfig::default()
        });
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        // A /64 is one client: the second IPv6 address draws on the first one's burst.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        let attempts = [
            (FailureReason::UnknownKey, one, true),
            (FailureReason::UnknownKey, one, true),
            (FailureReason::UnknownKey, one, false),
            (FailureReason::MissingKey, v6a, true),
            (FailureReason::MissingKey, v6b, true),
            (FailureReason::MissingKey, v6b, false),
        ];
        for (i, (reason, addr, allowed)) in attempts.into_iter().enumerate() {
            let outcome = limiter.note_failure(Some(reason), Some(addr));
            assert_eq!(
                outcome.is_ok(),
                allowed,
                "attempt {i}: {reason:?} from {addr}"
            );
        }
        // Many addresses: the tally stays bounded.
        for i in 0..200u8 {
            let addr = IpAddr::from([10, 1, 0, i]);
            let _ = limiter.note_failure(Some(FailureReason::UnknownKey), Some(addr));
        }
        let report = limiter.drain();
        assert!(report.failures.len() <= 4, "{:?}", report.failures);
        assert_eq!(report.failures[&(FailureReason::UnknownKey, Some(one))], 3);
        let total: u64 = report.failures.values().sum();
        assert_eq!(total, 206);
    }
}
