// The first-run page (create the admin) and the login page.
import { useState } from "preact/hooks";
import { api, type User } from "./api";

export function Login(props: { setup: boolean; onIn(user: User, csrf: string): void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError("");
    if (props.setup && password !== again) return setError("The passwords differ.");
    setBusy(true);
    try {
      const r = await api<{ user: User; csrf_token: string }>("POST", props.setup ? "/auth/setup" : "/auth/login", { name, password });
      props.onIn(r.user, r.csrf_token);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="center">
      <form class="card login" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">{props.setup ? "Welcome to Sluice" : "Sign in to Sluice"}</h1>
        {props.setup && <p class="muted">No account exists yet. Create the administrator account.</p>}
        <label>
          Name
          <input name="name" autocomplete="username" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete={props.setup ? "new-password" : "current-password"}
            required
            minLength={props.setup ? 8 : undefined}
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {props.setup && (
          <label>
            Password again
            <input name="again" type="password" autocomplete="new-password" required value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
          </label>
        )}
        {error && <p class="error" role="alert">{error}</p>}
        <button type="submit" class="primary" disabled={busy}>
          {props.setup ? "Create admin account" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
