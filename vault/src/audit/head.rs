//! What the running vault remembers of the audit chain: the last link it wrote.
//!
//! The chain's MACs catch an edited, inserted or reordered event, but not events cut off the end
//! or a database rolled back to an older copy: what is left still verifies. A running vault knows
//! better: it wrote (or, at start-up, read) a link, and that link must stay in the chain. Before
//! every append the store shows [`ChainHead::check`] the stored head (and, when the head has moved
//! on because another process appended, the stored MAC at the remembered sequence number). If the
//! stored chain is shorter or different, the vault refuses to append for the rest of its life:
//! every audited request gets 503 and `/readyz` says not ready, until an operator has looked
//! (docs/ARCHITECTURE.md §9.2).

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// One link of the chain: an event's sequence number and MAC (compared in constant time).
#[derive(Clone, Copy, Debug, Eq)]
pub struct Link {
    /// The event's sequence number.
    pub seq: u64,
    /// Its chain MAC.
    pub mac: [u8; 32],
}

impl Link {
    /// Whether `mac` is this link's MAC (constant time: it decides whether to trust the store).
    pub fn has_mac(&self, mac: &[u8; 32]) -> bool {
        shared::ct::bytes_eq(&self.mac, mac)
    }
}

impl PartialEq for Link {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq && self.has_mac(&other.mac)
    }
}

/// Why the stored chain no longer holds what this vault knows it wrote.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum HeadMismatch {
    /// Fewer events are stored than this vault saw: the tail was cut off.
    #[error(
        "the stored audit chain ends at event {stored}, before event {known} which this vault wrote or read"
    )]
    Behind {
        /// The stored head's sequence number (0 for an empty chain).
        stored: u64,
        /// The remembered one.
        known: u64,
    },
    /// The event at the remembered sequence number is not the one this vault knows.
    #[error("the stored audit event {seq} differs from the one this vault wrote or read")]
    Differs {
        /// The sequence number.
        seq: u64,
    },
    /// An earlier check failed; the vault stays refusing until it is restarted.
    #[error(
        "the audit chain failed an earlier check; refusing to append until an operator restarts the vault"
    )]
    Latched,
}

/// The remembered head and whether a check has failed. One per store (per process).
#[derive(Debug, Default)]
pub struct ChainHead {
    known: Mutex<Option<Link>>,
    broken: AtomicBool,
}

impl ChainHead {
    /// A tracker starting from the head the store holds at open (`None`: an empty chain).
    pub fn starting_at(head: Option<Link>) -> Self {
        Self {
            known: Mutex::new(head),
            broken: AtomicBool::new(false),
        }
    }

    /// The remembered head.
    pub fn known(&self) -> Option<Link> {
        *self.known.lock()
    }

    /// Whether a check has failed.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Checks the stored chain against `known`, the head the caller took from [`Self::known`]
    /// *before* reading the stored chain (a snapshot: other tasks may advance the head
    /// meanwhile, and the older link must hold as well; taken after the read, a commit in
    /// between would make the stored head look behind). `stored` is the stored head; `mac_at_known` the stored MAC at `known`'s
    /// sequence number (needed only when the stored head is past it; `None` when there is no
    /// such event).
    ///
    /// # Errors
    ///
    /// [`HeadMismatch`]; the first failure latches.
    pub fn check(
        &self,
        known: Option<Link>,
        stored: Option<Link>,
        mac_at_known: Option<[u8; 32]>,
    ) -> Result<(), HeadMismatch> {
        if self.is_broken() {
            return Err(HeadMismatch::Latched);
        }
        let Some(known) = known else {
            return Ok(());
        };
        let stored_seq = stored.map_or(0, |l| l.seq);
        let verdict = if stored_seq < known.seq {
            Err(HeadMismatch::Behind {
                stored: stored_seq,
                known: known.seq,
            })
        } else if stored_seq == known.seq {
            match stored {
                Some(s) if known.has_mac(&s.mac) => Ok(()),
                _ => Err(HeadMismatch::Differs { seq: known.seq }),
            }
        } else {
            match mac_at_known {
                Some(mac) if known.has_mac(&mac) => Ok(()),
                _ => Err(HeadMismatch::Differs { seq: known.seq }),
            }
        };
        if let Err(e) = verdict
            && !self.broken.swap(true, Ordering::AcqRel)
        {
            tracing::error!(
                error = %e,
                "AUDIT CHAIN TAMPERING: the stored audit log no longer holds what this vault wrote; refusing every audited request until restart (run `vault audit verify`)"
            );
        }
        verdict
    }

    /// Remembers the head the store holds now (at open, before this process writes).
    pub fn adopt(&self, stored: Option<Link>) {
        if let Some(link) = stored {
            self.advance(link);
        }
    }

    /// Records a link this process committed (the newest wins).
    pub fn advance(&self, link: Link) {
        let mut known = self.known.lock();
        if known.is_none_or(|k| k.seq < link.seq) {
            *known = Some(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(seq: u64, byte: u8) -> Link {
        Link {
            seq,
            mac: [byte; 32],
        }
    }

    #[test]
    fn accepts_growth_and_refuses_cuts_and_rewrites_for_good() {
        let head = ChainHead::starting_at(Some(link(5, 5)));
        let check = |stored, at| head.check(head.known(), stored, at);
        assert_eq!(check(Some(link(5, 5)), None), Ok(()));
        // Another process appended: the event at 5 must still be ours.
        assert_eq!(check(Some(link(7, 7)), Some([5; 32])), Ok(()));
        // A snapshot taken before the head moved on is checked as it was.
        let snapshot = head.known();
        head.advance(link(8, 8));
        head.advance(link(6, 6));
        assert_eq!(
            head.check(snapshot, Some(link(8, 8)), Some([5; 32])),
            Ok(())
        );
        assert_eq!(head.known(), Some(link(8, 8)));
        assert_eq!(
            check(Some(link(7, 7)), None),
            Err(HeadMismatch::Behind {
                stored: 7,
                known: 8
            })
        );
        // Latched: even the right head is refused now.
        assert_eq!(check(Some(link(8, 8)), None), Err(HeadMismatch::Latched));
        assert!(head.is_broken());

        let fresh = || ChainHead::starting_at(Some(link(5, 5)));
        let known = Some(link(5, 5));
        assert_eq!(
            fresh().check(known, Some(link(5, 6)), None),
            Err(HeadMismatch::Differs { seq: 5 })
        );
        assert_eq!(
            fresh().check(known, Some(link(9, 9)), Some([1; 32])),
            Err(HeadMismatch::Differs { seq: 5 })
        );
        assert_eq!(
            fresh().check(known, None, None),
            Err(HeadMismatch::Behind {
                stored: 0,
                known: 5
            })
        );
        assert_eq!(ChainHead::starting_at(None).check(None, None, None), Ok(()));
    }
}
