-- Stored Responses API responses, for previous_response_id and GET/DELETE
-- /v1/responses/{id}. `input` is the whole context the response answered (JSON input
-- items: the chain before it, then its own input; instructions excluded), `response`
-- the response object as the client got it. Rows past `expires_at` are never read and
-- are deleted by the retention sweep. Times are unix milliseconds. The same SQL on
-- SQLite and Postgres.
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    input TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX responses_expires ON responses (expires_at);
