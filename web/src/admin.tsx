// Admin: users, usage per day (tokens and spend), backends and agents (live), agent tokens.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api";

type Tab = "users" | "usage" | "backends" | "tokens";

export function Admin() {
  const [tab, setTab] = useState<Tab>((new URLSearchParams(location.search).get("tab") as Tab) || "users");
  const tabs: [Tab, string][] = [["users", "Users"], ["usage", "Usage"], ["backends", "Backends & agents"], ["tokens", "Agent tokens"]];
  return (
    <div class="panel">
      <h1>Admin</h1>
      <div class="tabs" role="tablist" aria-label="Admin sections">
        {tabs.map(([t, label]) => (
          <button key={t} role="tab" id={`tab-${t}`} aria-selected={tab === t} aria-controls="admin-panel" onClick={() => { setTab(t); history.replaceState(null, "", `/admin?tab=${t}`); }}>
            {label}
          </button>
        ))}
      </div>
      <div id="admin-panel" role="tabpanel" aria-labelledby={`tab-${tab}`}>
        {tab === "users" && <Users />}
        {tab === "usage" && <Usage />}
        {tab === "backends" && <Backends />}
        {tab === "tokens" && <Tokens />}
      </div>
    </div>
  );
}

type UserRow = { id: string; name: string; admin: boolean; disabled: boolean; created_at: number };

function Users() {
  const [users, setUsers] = useState<UserRow[]>([]);
  const [form, setForm] = useState({ name: "", password: "", role: "user" });
  const [error, setError] = useState("");
  const load = () => api<{ users: UserRow[] }>("GET", "/admin/users").then((r) => setUsers(r.users)).catch((e) => setError(e.message));
  useEffect(() => void load(), []);
  const act = (p: Promise<unknown>) => p.then(load).catch((e) => setError(e.message));
  return (
    <section aria-label="Users">
      <form class="row wrap" onSubmit={(e) => { e.preventDefault(); setError(""); act(api("POST", "/admin/users", form).then(() => setForm({ name: "", password: "", role: "user" }))); }}>
        <label>Name<input required value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} /></label>
        <label>Password<input type="password" autocomplete="new-password" minLength={8} required value={form.password} onInput={(e) => setForm({ ...form, password: e.currentTarget.value })} /></label>
        <label>Role<select value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}><option value="user">user</option><option value="admin">admin</option></select></label>
        <button class="primary" type="submit">Create user</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
      <table>
        <thead><tr><th>Name</th><th>Role</th><th>Status</th><th><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          {users.map((u) => (
            <tr key={u.id}>
              <td>{u.name}</td>
              <td>{u.admin ? "admin" : "user"}</td>
              <td>{u.disabled ? "disabled" : "active"}</td>
              <td class="row">
                <button class="small" onClick={() => act(api("PATCH", `/admin/users/${u.id}`, { disabled: !u.disabled }))}>{u.disabled ? "Enable" : "Disable"}</button>
                <button class="small" onClick={() => act(api("PATCH", `/admin/users/${u.id}`, { role: u.admin ? "user" : "admin" }))}>{u.admin ? "Make user" : "Make admin"}</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

type UsageRow = { group: string | null; requests: number; prompt_tokens: number; completion_tokens: number; spend: number };

function Bars(props: { rows: UsageRow[]; label: string }) {
  const max = Math.max(1, ...props.rows.map((r) => r.prompt_tokens + r.completion_tokens));
  return (
    <figure class="bars" aria-label={props.label}>
      <figcaption>{props.label}</figcaption>
      <table>
        <thead><tr><th>{props.label.split(" ").pop()}</th><th>Tokens</th><th>Requests</th><th>Spend</th></tr></thead>
        <tbody>
          {props.rows.map((r) => (
            <tr key={r.group ?? "-"}>
              <td>{r.group ?? "—"}</td>
              <td class="bar-cell">
                <meter min={0} max={max} value={r.prompt_tokens + r.completion_tokens} aria-label={`${r.prompt_tokens + r.completion_tokens} tokens`} />
                <span>{(r.prompt_tokens + r.completion_tokens).toLocaleString()}</span>
              </td>
              <td>{r.requests.toLocaleString()}</td>
              <td>${r.spend.toFixed(4)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

function Usage() {
  const [data, setData] = useState<Record<string, UsageRow[]>>({});
  const [names, setNames] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  useEffect(() => {
    for (const g of ["day", "model", "user"]) {
      api<{ data: UsageRow[] }>("GET", `/v1/usage?group_by=${g}&all=true`)
        .then((r) => setData((d) => ({ ...d, [g]: r.data })))
        .catch((e) => setError(e.message));
    }
    api<{ users: UserRow[] }>("GET", "/admin/users")
      .then((r) => setNames(Object.fromEntries(r.users.map((u) => [u.id, u.name]))))
      .catch(() => {});
  }, []);
  const byUser = data.user?.map((r) => ({ ...r, group: r.group ? names[r.group] ?? r.group : "no account" }));
  return (
    <section aria-label="Usage">
      <p class="muted">The last 30 days, every user. <a href="/v1/usage?group_by=none&all=true&format=csv">Download CSV</a></p>
      {error && <p class="error" role="alert">{error}</p>}
      {data.day && <Bars rows={data.day} label="Tokens per day" />}
      {data.model && <Bars rows={data.model} label="Tokens per model" />}
      {byUser && <Bars rows={byUser} label="Tokens per user" />}
    </section>
  );
}

function Backends() {
  const [backends, setBackends] = useState<any[]>([]);
  const [agents, setAgents] = useState<any[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    const load = () => {
      api<{ backends: any[] }>("GET", "/admin/backends").then((r) => setBackends(r.backends)).catch((e) => setError(e.message));
      api<{ agents: any[] }>("GET", "/admin/agents").then((r) => setAgents(r.agents)).catch(() => {});
    };
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, []);
  const ms = (v: number | null) => (v == null ? "—" : `${v.toFixed(0)} ms`);
  return (
    <section aria-label="Backends and agents">
      {error && <p class="error" role="alert">{error}</p>}
      <h2>Backends</h2>
      <table>
        <thead><tr><th>Name</th><th>Kind</th><th>Health</th><th>Breaker</th><th>In flight</th><th>TTFT p95</th></tr></thead>
        <tbody>
          {backends.map((b) => (
            <tr key={b.name}>
              <td>{b.name}</td><td>{b.kind}</td>
              <td><span class={`dot ${b.healthy ? "ok" : "bad"}`} aria-hidden="true" />{b.healthy ? "healthy" : "unhealthy"}</td>
              <td>{b.breaker}</td><td>{b.outstanding}</td><td>{ms(b.p95_ttft_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Agents</h2>
      {agents.length === 0 ? <p class="muted">No agent is connected.</p> : (
        <table>
          <thead><tr><th>Id</th><th>Address</th><th>Models</th><th>Slots</th><th>Jobs</th><th>Tokens served</th></tr></thead>
          <tbody>
            {agents.map((a) => (
              <tr key={a.id}><td>{a.id}</td><td>{a.address ?? "—"}</td><td>{(a.models ?? []).join(", ")}</td><td>{a.slots}</td><td>{a.jobs_in_flight}</td><td>{a.tokens_served}</td></tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Tokens() {
  const [tokens, setTokens] = useState<any[]>([]);
  const [name, setName] = useState("");
  const [secret, setSecret] = useState("");
  const [error, setError] = useState("");
  const load = () => api<{ tokens: any[] }>("GET", "/admin/agent-tokens").then((r) => setTokens(r.tokens)).catch((e) => setError(e.message));
  useEffect(() => void load(), []);
  return (
    <section aria-label="Agent tokens">
      <form class="row" onSubmit={(e) => { e.preventDefault(); api<{ token: string }>("POST", "/admin/agent-tokens", { name }).then((r) => { setSecret(r.token); setName(""); load(); }).catch((e) => setError(e.message)); }}>
        <label class="grow"><span class="sr-only">Token name</span><input placeholder="Agent name, e.g. gpu-box-1" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
        <button class="primary" type="submit">Create token</button>
      </form>
      {secret && <div class="notice" role="status"><p>The agent token — shown once:</p><code class="secret">{secret}</code><button class="small" onClick={() => setSecret("")}>Done</button></div>}
      {error && <p class="error" role="alert">{error}</p>}
      <table>
        <thead><tr><th>Name</th><th>Id</th><th>Status</th><th><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          {tokens.map((t) => (
            <tr key={t.id}>
              <td>{t.name}</td><td><code>{t.id}</code></td><td>{t.revoked_at ? "revoked" : "active"}</td>
              <td>{!t.revoked_at && <button class="small danger" onClick={() => confirm("Revoke this token? Its agents disconnect.") && api("DELETE", `/admin/agent-tokens/${t.id}`).then(load)}>Revoke</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
