-- Monthly spend budgets of keys and users: the amount in micro-dollars (NULL: none) and
-- what happens once it is spent ('hard': refuse, 'soft': log and count).
ALTER TABLE api_keys ADD COLUMN monthly_budget_micros BIGINT;
ALTER TABLE api_keys ADD COLUMN budget_mode TEXT;
ALTER TABLE users ADD COLUMN monthly_budget_micros BIGINT;
ALTER TABLE users ADD COLUMN budget_mode TEXT;
