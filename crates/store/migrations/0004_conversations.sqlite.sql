-- Conversations and their messages; times are unix milliseconds, ids uuid v7 strings.
-- (Postgres twin: 0004_conversations.postgres.sql; full-text search differs.)
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at DESC, id DESC);
CREATE INDEX conversations_updated ON conversations (updated_at);

-- `seq` is the rowid the full-text index points at: an INTEGER PRIMARY KEY, because
-- VACUUM may renumber an implicit rowid. The owner is copied from the conversation
-- (conversations never change hands) so search can narrow to one user in the index.
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    parent_id TEXT,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    model TEXT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    ttft_ms BIGINT,
    duration_ms BIGINT,
    finish_reason TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    -- One FTS token per owner: hex has no separators for the tokenizer to split on.
    owner TEXT GENERATED ALWAYS AS (hex(user_id)) VIRTUAL
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);

-- External-content FTS5 index over messages, kept in step by the triggers below
-- (they also fire for rows removed by ON DELETE CASCADE).
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content, owner, content = 'messages', content_rowid = 'seq'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content, owner) VALUES (new.seq, new.content, new.owner);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, owner)
        VALUES ('delete', old.seq, old.content, old.owner);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, owner)
        VALUES ('delete', old.seq, old.content, old.owner);
    INSERT INTO messages_fts (rowid, content, owner) VALUES (new.seq, new.content, new.owner);
END;
