-- Request rates per credential (OWASP API4; gateway/rate_limits.py): one counter per bucket
-- ("requests:wal_...", "bill_lookups:wal_...") per fixed window, in the database so that
-- every node of a deployment counts against the same limit. A bucket's older windows are
-- dropped when its next window opens, so the table holds about one row per active caller.
CREATE TABLE IF NOT EXISTS rate_limit_windows (
    bucket       TEXT NOT NULL,
    window_start BIGINT NOT NULL,            -- unix seconds, a multiple of the window's length
    hits         BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
