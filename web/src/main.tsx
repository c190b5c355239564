// Boot: decide between first-run setup, login and the app; a tiny history router.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, setCsrf, type User } from "./api";
import { Shell } from "./shell";
import { Login } from "./login";
import "./style.css";

export function navigate(path: string) {
  if (location.pathname + location.search !== path) history.pushState(null, "", path);
  window.dispatchEvent(new Event("sluice:navigate"));
}

export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    window.addEventListener("popstate", on);
    window.addEventListener("sluice:navigate", on);
    return () => {
      window.removeEventListener("popstate", on);
      window.removeEventListener("sluice:navigate", on);
    };
  }, []);
  return path;
}

export function applyTheme() {
  const t = localStorage.getItem("sluice.theme") ?? "system";
  const dark = t === "dark" || (t === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}

type Boot = { state: "loading" } | { state: "setup" } | { state: "login"; error?: string } | { state: "in"; user: User } | { state: "down"; error: string };

function App() {
  const [boot, setBoot] = useState<Boot>({ state: "loading" });
  const load = async () => {
    try {
      const setup = await api<{ needed: boolean }>("GET", "/auth/setup");
      if (setup.needed) return setBoot({ state: "setup" });
      const me = await api<{ user: User; csrf_token?: string }>("GET", "/auth/me");
      if (me.csrf_token) setCsrf(me.csrf_token);
      setBoot({ state: "in", user: me.user });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setBoot({ state: "login" });
      else setBoot({ state: "down", error: (e as Error).message });
    }
  };
  useEffect(() => {
    applyTheme();
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
    window.addEventListener("sluice:signedout", () => setBoot({ state: "login" }));
    load();
  }, []);
  switch (boot.state) {
    case "loading":
      return <div class="center" aria-busy="true">Loading…</div>;
    case "down":
      return (
        <main class="center card">
          <h1>Sluice is not reachable</h1>
          <p role="alert">{boot.error}</p>
          <button onClick={load}>Try again</button>
        </main>
      );
    case "setup":
    case "login":
      return (
        <Login
          setup={boot.state === "setup"}
          onIn={(user, csrf) => {
            setCsrf(csrf);
            setBoot({ state: "in", user });
          }}
        />
      );
    case "in":
      return <Shell user={boot.user} onLogout={() => setBoot({ state: "login" })} />;
  }
}

render(<App />, document.getElementById("app")!);
