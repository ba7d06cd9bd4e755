-- Indexes for the gateway's write path at load.
-- idempotency.prune() forgets old records by age; without this index that delete
-- scans the whole table while holding the writer lock.
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
