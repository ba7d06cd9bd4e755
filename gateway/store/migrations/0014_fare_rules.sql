-- Account fares with several gateway nodes on one database: the published fare rules
-- live here, the same for every node (they were the file fare_rules.json in one node's
-- data directory), and a charging run holds each token it prices.
-- Times are unix seconds UTC. New tables only: no existing row can break them.

-- Every version of the fare rules the operator published, as validated by protocol.fares.
-- The current rules are the highest version. A version number names one document: the
-- same document published again is the same version; other content needs a new number.
CREATE TABLE IF NOT EXISTS fare_rule_versions (
    version         BIGINT PRIMARY KEY,     -- the document's "version"
    document        TEXT NOT NULL,          -- the rules as published, JSON with sorted keys
    digest          TEXT NOT NULL,          -- SHA-256 hex of document
    effective_from  BIGINT NOT NULL,        -- the document's effective_from
    published_at    BIGINT NOT NULL
);

-- A token a charging run priced. A run holds the rows of the tokens it prices (and of
-- those whose debts it collects) until it commits, so two runs at once, on two nodes,
-- price a token one after the other: the second sees what the first charged.
CREATE TABLE IF NOT EXISTS fare_tokens (
    token    TEXT PRIMARY KEY,              -- pan_/uid_ keyed hash
    held_at  BIGINT NOT NULL                -- when a run last held it
);
