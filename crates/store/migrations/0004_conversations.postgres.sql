-- Conversations and their messages; times are unix milliseconds, ids uuid v7 strings.
-- (SQLite twin: 0004_conversations.sqlite.sql; full-text search differs.)
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

-- The owner is copied from the conversation (conversations never change hands) so
-- search narrows to one user without a join.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
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
    content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);
CREATE INDEX messages_user ON messages (user_id);
CREATE INDEX messages_fts ON messages USING GIN (content_tsv);
