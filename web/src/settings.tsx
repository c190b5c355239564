// Settings: the caller's API keys (the secret shown once), password, theme.
import { useEffect, useState } from "preact/hooks";
import { api, type User } from "./api";
import { applyTheme } from "./main";

type Key = { id: string; name: string; prefix: string; created_at: number; last_used_at: number | null; revoked_at: number | null; expires_at: number | null };

const when = (s: number | null) => (s ? new Date(s * 1000).toLocaleString() : "never");

export function Settings(props: { user: User }) {
  const [keys, setKeys] = useState<Key[]>([]);
  const [name, setName] = useState("");
  const [secret, setSecret] = useState("");
  const [error, setError] = useState("");
  const [pw, setPw] = useState({ current: "", new: "", again: "" });
  const [pwMsg, setPwMsg] = useState("");
  const [theme, setTheme] = useState(localStorage.getItem("sluice.theme") ?? "system");
  const load = () => api<{ keys: Key[] }>("GET", "/v1/keys").then((r) => setKeys(r.keys)).catch((e) => setError(e.message));
  useEffect(() => {
    if (props.user.kind === "user") load();
  }, []);
  const create = async (e: Event) => {
    e.preventDefault();
    setError("");
    try {
      const r = await api<{ key: string }>("POST", "/v1/keys", { name });
      setSecret(r.key);
      setName("");
      load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const revoke = async (id: string) => {
    if (!confirm("Revoke this key? Programs using it stop working.")) return;
    await api("DELETE", `/v1/keys/${id}`).catch((e) => setError(e.message));
    load();
  };
  const change = async (e: Event) => {
    e.preventDefault();
    setPwMsg("");
    if (pw.new !== pw.again) return setPwMsg("The new passwords differ.");
    try {
      await api("POST", "/auth/password", { current: pw.current, new: pw.new });
      setPw({ current: "", new: "", again: "" });
      setPwMsg("Password changed.");
    } catch (e) {
      setPwMsg((e as Error).message);
    }
  };
  const pick = (t: string) => {
    setTheme(t);
    localStorage.setItem("sluice.theme", t);
    applyTheme();
  };
  return (
    <div class="panel">
      <h1>Settings</h1>
      <section aria-labelledby="theme-h">
        <h2 id="theme-h">Theme</h2>
        <div class="row" role="radiogroup" aria-label="Theme">
          {["system", "light", "dark"].map((t) => (
            <label key={t} class="radio">
              <input type="radio" name="theme" value={t} checked={theme === t} onChange={() => pick(t)} /> {t[0].toUpperCase() + t.slice(1)}
            </label>
          ))}
        </div>
      </section>
      {props.user.kind === "user" ? (
        <>
          <section aria-labelledby="keys-h">
            <h2 id="keys-h">API keys</h2>
            <p class="muted">For the OpenAI and Ollama APIs of this Sluice: send it as <code>Authorization: Bearer …</code>.</p>
            <form class="row" onSubmit={create}>
              <label class="grow">
                <span class="sr-only">Key name</span>
                <input placeholder="Key name, e.g. laptop" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
              </label>
              <button class="primary" type="submit">Create key</button>
            </form>
            {secret && (
              <div class="notice" role="status">
                <p>Your new key — copy it now, it is not shown again:</p>
                <code class="secret">{secret}</code>
                <div class="row">
                  <button class="small" onClick={() => navigator.clipboard?.writeText(secret)}>Copy</button>
                  <button class="small" onClick={() => setSecret("")}>Done</button>
                </div>
              </div>
            )}
            {error && <p class="error" role="alert">{error}</p>}
            <table>
              <thead>
                <tr><th>Name</th><th>Key</th><th>Created</th><th>Last used</th><th><span class="sr-only">Actions</span></th></tr>
              </thead>
              <tbody>
                {keys.map((k) => (
                  <tr key={k.id}>
                    <td>{k.name}</td>
                    <td><code>{k.prefix}…</code></td>
                    <td>{when(k.created_at)}</td>
                    <td>{when(k.last_used_at)}</td>
                    <td>{k.revoked_at ? <span class="muted">revoked</span> : <button class="small danger" onClick={() => revoke(k.id)}>Revoke</button>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          <section aria-labelledby="pw-h">
            <h2 id="pw-h">Password</h2>
            <form class="stack" onSubmit={change}>
              <label>Current password<input type="password" autocomplete="current-password" required value={pw.current} onInput={(e) => setPw({ ...pw, current: e.currentTarget.value })} /></label>
              <label>New password<input type="password" autocomplete="new-password" minLength={8} required value={pw.new} onInput={(e) => setPw({ ...pw, new: e.currentTarget.value })} /></label>
              <label>New password again<input type="password" autocomplete="new-password" required value={pw.again} onInput={(e) => setPw({ ...pw, again: e.currentTarget.value })} /></label>
              {pwMsg && <p role="status">{pwMsg}</p>}
              <button class="primary" type="submit">Change password</button>
            </form>
          </section>
        </>
      ) : (
        <p class="muted">You use Sluice without an account ({props.user.name}): keys and passwords belong to user accounts.</p>
      )}
    </div>
  );
}
