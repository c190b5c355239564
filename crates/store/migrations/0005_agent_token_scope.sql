-- Agent tokens are bound to the models their agents may serve (a JSON list of globs;
-- NULL: any name no configured backend serves) and may expire (unix seconds).
ALTER TABLE agent_tokens ADD COLUMN models TEXT;
ALTER TABLE agent_tokens ADD COLUMN expires_at BIGINT;
