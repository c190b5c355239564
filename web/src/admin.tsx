// Admin: users, usage over time (tokens and spend per day, split by model or user),
// backends and agents (live, with tokens/s and queues), agent tokens.
import { useEffect, useRef, useState } from "preact/hooks";
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

type SeriesPoint = { day: string; group: string | null; requests: number; prompt_tokens: number; completion_tokens: number; spend: number };
type Metric = "tokens" | "spend";

// Colours that read on both themes; the last one is "other".
const PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#9ca3af"];
const TOP = PALETTE.length - 1;

const metricOf = (p: SeriesPoint, m: Metric) => (m === "tokens" ? p.prompt_tokens + p.completion_tokens : p.spend);
const fmt = (v: number, m: Metric) => (m === "tokens" ? Math.round(v).toLocaleString() : `$${v.toFixed(v < 1 ? 4 : 2)}`);

// Every day from `from` to `to` (YYYY-MM-DD, UTC), so quiet days show as gaps.
function daysBetween(from: string, to: string): string[] {
  const out: string[] = [];
  const end = Date.parse(`${to}T00:00:00Z`);
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= end && out.length < 400; t += 86_400_000) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

// A stacked bar chart of one metric per day, one colour per group (the largest
// groups; the rest merged into "other"), with the numbers in a table beside it for
// screen readers and for exact values.
export function Stacked(props: { points: SeriesPoint[]; metric: Metric; title: string; days: string[]; name: (g: string | null) => string }) {
  const { points, metric, days } = props;
  const totals = new Map<string, number>();
  for (const p of points) totals.set(props.name(p.group), (totals.get(props.name(p.group)) ?? 0) + metricOf(p, metric));
  const ranked = [...totals.entries()].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).map(([g]) => g);
  const shown = ranked.slice(0, ranked.length > TOP + 1 ? TOP : TOP + 1);
  const series = ranked.length > shown.length ? [...shown, "other"] : shown;
  const cell = new Map<string, number>();
  for (const p of points) {
    const g = shown.includes(props.name(p.group)) ? props.name(p.group) : "other";
    const k = `${p.day}|${g}`;
    cell.set(k, (cell.get(k) ?? 0) + metricOf(p, metric));
  }
  const dayTotal = days.map((d) => series.reduce((sum, g) => sum + (cell.get(`${d}|${g}`) ?? 0), 0));
  const max = Math.max(0, ...dayTotal);
  const W = 600, H = 160, pad = 2;
  const bw = days.length ? W / days.length : W;
  const total = dayTotal.reduce((a, b) => a + b, 0);
  return (
    <figure class="chart" aria-label={props.title}>
      <figcaption>{props.title} <span class="muted">— {fmt(total, metric)} in all</span></figcaption>
      {max === 0 ? <p class="muted">Nothing recorded in this period.</p> : (
        <>
          <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${props.title}: ${fmt(total, metric)} over ${days.length} days, peak ${fmt(max, metric)} per day`} preserveAspectRatio="none">
            {days.map((d, i) => {
              let y = H;
              return (
                <g key={d}>
                  {series.map((g, si) => {
                    const v = cell.get(`${d}|${g}`) ?? 0;
                    if (!v) return null;
                    const h = (v / max) * (H - 4);
                    y -= h;
                    return <rect key={g} x={i * bw + pad / 2} y={y} width={Math.max(1, bw - pad)} height={h} fill={PALETTE[g === "other" ? TOP : si]}><title>{`${d} · ${g}: ${fmt(v, metric)}`}</title></rect>;
                  })}
                </g>
              );
            })}
            <line x1="0" y1={H} x2={W} y2={H} class="axis" vector-effect="non-scaling-stroke" />
          </svg>
          <div class="ticks" aria-hidden="true"><span>{days[0]}</span><span>{days[days.length - 1]}</span></div>
          <ul class="legend">
            {series.map((g, si) => <li key={g}><span class="swatch" style={{ background: PALETTE[g === "other" ? TOP : si] }} aria-hidden="true" />{g} <span class="muted">{fmt(totals.get(g) ?? ranked.slice(shown.length).reduce((a, r) => a + (totals.get(r) ?? 0), 0), metric)}</span></li>)}
          </ul>
          <details>
            <summary>Numbers</summary>
            <table>
              <thead><tr><th>Day</th>{series.map((g) => <th key={g}>{g}</th>)}</tr></thead>
              <tbody>
                {days.map((d, i) => dayTotal[i] > 0 && (
                  <tr key={d}><td>{d}</td>{series.map((g) => <td key={g}>{fmt(cell.get(`${d}|${g}`) ?? 0, metric)}</td>)}</tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </figure>
  );
}

function Usage() {
  const [data, setData] = useState<Record<string, UsageRow[]>>({});
  const [series, setSeries] = useState<{ split: string; from: string; to: string; data: SeriesPoint[] } | null>(null);
  const [split, setSplit] = useState<"model" | "user">("model");
  const [names, setNames] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  useEffect(() => {
    for (const g of ["model", "user"]) {
      api<{ data: UsageRow[] }>("GET", `/v1/usage?group_by=${g}&all=true`)
        .then((r) => setData((d) => ({ ...d, [g]: r.data })))
        .catch((e) => setError(e.message));
    }
    api<{ users: UserRow[] }>("GET", "/admin/users")
      .then((r) => setNames(Object.fromEntries(r.users.map((u) => [u.id, u.name]))))
      .catch(() => {});
  }, []);
  useEffect(() => {
    api<{ split: string; from: string; to: string; data: SeriesPoint[] }>("GET", `/v1/usage?group_by=day&split=${split}&all=true`)
      .then(setSeries)
      .catch((e) => setError(e.message));
  }, [split]);
  const userName = (g: string | null) => (g ? names[g] ?? g : "no account");
  const name = split === "user" ? userName : (g: string | null) => g ?? "—";
  const byUser = data.user?.map((r) => ({ ...r, group: userName(r.group) }));
  const days = series ? daysBetween(series.from.slice(0, 10), new Date(Date.parse(series.to) - 1).toISOString().slice(0, 10)) : [];
  return (
    <section aria-label="Usage">
      <div class="row wrap">
        <p class="muted grow">The last 30 days, every user. <a href="/v1/usage?group_by=none&all=true&format=csv">Download CSV</a></p>
        <label>Split by <select value={split} onChange={(e) => setSplit(e.currentTarget.value as "model" | "user")}><option value="model">model</option><option value="user">user</option></select></label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {series && series.split === split && (
        <div class="charts">
          <Stacked points={series.data} metric="tokens" title={`Tokens per day by ${split}`} days={days} name={name} />
          <Stacked points={series.data} metric="spend" title={`Spend per day by ${split}`} days={days} name={name} />
        </div>
      )}
      {data.model && <Bars rows={data.model} label="Tokens per model" />}
      {byUser && <Bars rows={byUser} label="Tokens per user" />}
    </section>
  );
}

type Reading = { tokens: number; at: number };

function Backends() {
  const [backends, setBackends] = useState<any[]>([]);
  const [admission, setAdmission] = useState<{ model: string; running: number; queued: number }[]>([]);
  const [rates, setRates] = useState<Record<string, number>>({});
  const [agents, setAgents] = useState<any[]>([]);
  const [error, setError] = useState("");
  const last = useRef<Record<string, Reading>>({});
  useEffect(() => {
    const load = () => {
      api<{ backends: any[]; admission?: typeof admission }>("GET", "/admin/backends")
        .then((r) => {
          // Tokens per second between two reads of each backend's token counter.
          const now = performance.now();
          const next: Record<string, number> = {};
          for (const b of r.backends) {
            const prev = last.current[b.name];
            if (prev && now > prev.at) next[b.name] = Math.max(0, (b.completion_tokens - prev.tokens) / ((now - prev.at) / 1000));
            last.current[b.name] = { tokens: b.completion_tokens ?? 0, at: now };
          }
          setRates(next);
          setBackends(r.backends);
          setAdmission(r.admission ?? []);
        })
        .catch((e) => setError(e.message));
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
        <thead><tr><th>Name</th><th>Kind</th><th>Health</th><th>Breaker</th><th>In flight</th><th>Queue</th><th>TTFT p95</th><th>Tokens/s</th></tr></thead>
        <tbody>
          {backends.map((b) => (
            <tr key={b.name}>
              <td>{b.name}</td><td>{b.kind}</td>
              <td><span class={`dot ${b.healthy ? "ok" : "bad"}`} aria-hidden="true" />{b.healthy ? "healthy" : "unhealthy"}</td>
              <td>{b.breaker}</td><td>{b.outstanding}</td><td>{b.queued ?? "—"}</td><td>{ms(b.p95_ttft_ms)}</td>
              <td data-testid="rate">{rates[b.name] == null ? "—" : rates[b.name].toFixed(1)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {admission.length > 0 && (
        <>
          <h2>Admission queues</h2>
          <table>
            <thead><tr><th>Model</th><th>Running</th><th>Waiting</th></tr></thead>
            <tbody>{admission.map((a) => <tr key={a.model}><td>{a.model}</td><td>{a.running}</td><td>{a.queued}</td></tr>)}</tbody>
          </table>
        </>
      )}
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
