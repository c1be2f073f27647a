-- Dual control (vault operators, proposals and approvals) lives in the audit chain itself: an
-- operator, a proposal or an approval is an event nobody can forge without the audit key. This
-- index finds a proposal's approval at once, so that a proposal is approved only once even when
-- two operators approve it at the same moment (checked under the audit lock).
CREATE INDEX audit_events_dual_control ON audit_events (request_id)
    WHERE action IN ('dual.propose', 'dual.approve');
