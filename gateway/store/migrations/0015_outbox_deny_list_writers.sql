-- Webhooks and the issuer, correct with many writers at once (several gateway nodes on
-- one PostgreSQL, no global writer lock).

-- An event reaches an endpoint once: at most one delivery per (event, endpoint), so the
-- fan-out can insert with ON CONFLICT DO NOTHING. Existing data keeps it: deliveries were
-- always made once per subscribed endpoint when the event was written, and their ids are
-- built from the pair (whd_<event>_<endpoint>).
-- The index leads with event_id, so it also serves what webhook_deliveries_event did.
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_event_endpoint
    ON webhook_deliveries (event_id, endpoint_id);
DROP INDEX IF EXISTS webhook_deliveries_event;

-- The deny-list's version as one counter row: a change locks it and advances it by one
-- (UPDATE ... RETURNING), so two changes never take one number. It starts at the
-- latest version changed so far.
CREATE TABLE IF NOT EXISTS issuer_deny_list_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO issuer_deny_list_version (id, version)
    SELECT 1, COALESCE(MAX(version), 0) FROM issuer_deny_list_changes;
