-- Agent tokens: only the SHA-256 of each token is stored; the token is shown once.
CREATE TABLE agent_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
