//! Group commit on PostgreSQL: tokenize and plain audit appends that arrive while a commit is
//! under way are done together in the next transaction, under one audit lock and one commit.
//!
//! The audit chain makes every audited write wait for the previous one (each event's MAC covers
//! the last), and across replicas an advisory lock enforces that; one commit per event would cap
//! a vault at one event per commit round trip. One task per process runs the batches, one at a
//! time: a request is answered only after the commit holding its row and its audit event.
//! When a batch fails, its jobs are retried one by one, so one bad job cannot fail the others.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{Chain, insert_events, tokenize_in};
use crate::audit::{AuditDraft, ChainHead};
use crate::crypto::AuditKey;
use crate::store::Result;
use crate::store::{StoreError, TokenRecord};

/// The most jobs committed together.
const MAX_BATCH: usize = 256;

/// Hands jobs to the batch task. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    key: AuditKey,
    draft: AuditDraft,
    kind: Kind,
}

enum Kind {
    Append(oneshot::Sender<Result<()>>),
    Tokenize(Box<TokenRecord>, oneshot::Sender<Result<TokenRecord>>),
}

impl GroupCommit {
    /// Starts the batch task; it ends when the last handle is dropped. At most `capacity` jobs
    /// wait; more are refused with [`StoreError::Overloaded`].
    pub(super) fn start(pool: Pool, head: Arc<ChainHead>, capacity: usize) -> Self {
        let (jobs, queue) = mpsc::channel(capacity.max(1));
        tokio::spawn(run(pool, head, queue));
        Self { jobs }
    }

    /// Appends one audit event; returns once it is committed.
    pub(super) async fn append(&self, key: &AuditKey, draft: AuditDraft) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.submit(key, draft, Kind::Append(reply))?;
        answer.await.map_err(|_| StoreError::Task)?
    }

    /// Tokenize (see [`tokenize_in`]) with its audit event; returns once both are committed.
    pub(super) async fn tokenize(
        &self,
        key: &AuditKey,
        new: TokenRecord,
        draft: AuditDraft,
    ) -> Result<TokenRecord> {
        let (reply, answer) = oneshot::channel();
        self.submit(key, draft, Kind::Tokenize(Box::new(new), reply))?;
        answer.await.map_err(|_| StoreError::Task)?
    }

    fn submit(&self, key: &AuditKey, draft: AuditDraft, kind: Kind) -> Result<()> {
        self.jobs
            .try_send(Job {
                key: key.clone(),
                draft,
                kind,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::Task,
            })
    }
}

async fn run(pool: Pool, head: Arc<ChainHead>, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit(&pool, &head, &batch).await {
            Ok(records) => {
                for (job, record) in batch.into_iter().zip(records) {
                    answer(job, Ok(record));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(job) = batch.pop() {
                    answer(job, Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "group commit failed; retrying its jobs one by one");
                for job in batch {
                    let alone = commit(&pool, &head, std::slice::from_ref(&job)).await;
                    answer(job, alone.map(|mut r| r.pop().flatten()));
                }
            }
        }
    }
}

/// One transaction for the whole batch: the audit lock, each job's rows, every audit event in
/// one insert, one commit. Returns, per job, the token record a tokenize resolved to.
async fn commit(pool: &Pool, head: &ChainHead, batch: &[Job]) -> Result<Vec<Option<TokenRecord>>> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    let tx = client.transaction().await?;
    let mut chain = Chain::lock(&tx, head).await?;
    let mut events = Vec::with_capacity(batch.len());
    let mut records = Vec::with_capacity(batch.len());
    for job in batch {
        let mut draft = job.draft.clone();
        let record = match &job.kind {
            Kind::Append(_) => None,
            Kind::Tokenize(new, _) => {
                let record = tokenize_in(&tx, (**new).clone(), &mut draft).await?;
                draft.token = Some(record.token.as_str().to_owned());
                Some(record)
            }
        };
        events.push(chain.link(&job.key, draft));
        records.push(record);
    }
    insert_events(&tx, &events).await?;
    tx.commit().await?;
    head.advance(chain.head());
    Ok(records)
}

fn answer(job: Job, result: Result<Option<TokenRecord>>) {
    // A caller that gave up (its request timed out) no longer listens: nothing to tell.
    match job.kind {
        Kind::Append(reply) => {
            let _ = reply.send(result.map(drop));
        }
        Kind::Tokenize(_, reply) => {
            let _ = reply.send(result.and_then(|r| r.ok_or(StoreError::Task)));
        }
    }
}
