// The signed-in layout: the conversation list (grouped by day, searchable), the page
// of the current route, and the offline banner.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type Conversation, type User } from "./api";
import { navigate, usePath } from "./main";
import { Chat } from "./chat";
import { Settings } from "./settings";
import { Admin } from "./admin";

type Hit = { conversation_id: string; message_id: string; title: string; snippet: string };

function day(ms: number): string {
  const d = new Date(ms);
  const today = new Date();
  const start = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diff = Math.round((start(today) - start(d)) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  if (diff < 7) return d.toLocaleDateString(undefined, { weekday: "long" });
  return d.toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" });
}

export function Shell(props: { user: User; onLogout(): void }) {
  const path = usePath();
  const [list, setList] = useState<Conversation[]>([]);
  const [listError, setListError] = useState("");
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<Hit[] | null>(null);
  const [online, setOnline] = useState(navigator.onLine);
  const [menu, setMenu] = useState(false);
  const search = useRef<HTMLInputElement>(null);

  const refresh = async () => {
    try {
      const r = await api<{ data: Conversation[] }>("GET", "/v1/conversations?limit=100");
      setList(r.data);
      setListError("");
    } catch (e) {
      setListError((e as Error).message);
    }
  };
  useEffect(() => {
    refresh();
    const up = () => {
      setOnline(true);
      refresh();
    };
    const down = () => setOnline(false);
    const keys = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
        e.preventDefault();
        setMenu(true);
        search.current?.focus();
      }
    };
    window.addEventListener("online", up);
    window.addEventListener("offline", down);
    window.addEventListener("keydown", keys);
    window.addEventListener("sluice:conversations", refresh);
    return () => {
      window.removeEventListener("online", up);
      window.removeEventListener("offline", down);
      window.removeEventListener("keydown", keys);
      window.removeEventListener("sluice:conversations", refresh);
    };
  }, []);
  useEffect(() => {
    if (!query.trim()) return setHits(null);
    const t = setTimeout(async () => {
      try {
        const r = await api<{ data: Hit[] }>("GET", `/v1/conversations/search?q=${encodeURIComponent(query.trim())}&limit=30`);
        setHits(r.data);
      } catch {
        setHits([]);
      }
    }, 150);
    return () => clearTimeout(t);
  }, [query]);

  const current = path.startsWith("/c/") ? decodeURIComponent(path.slice(3)) : null;
  const groups: [string, Conversation[]][] = [];
  for (const c of list) {
    const g = day(c.updated_at);
    if (groups.length && groups[groups.length - 1][0] === g) groups[groups.length - 1][1].push(c);
    else groups.push([g, [c]]);
  }
  const go = (to: string) => {
    setMenu(false);
    navigate(to);
  };
  const logout = async () => {
    try {
      await api("POST", "/auth/logout");
    } finally {
      props.onLogout();
    }
  };
  const isAdmin = props.user.role === "admin";

  let page;
  if (path === "/settings") page = <Settings user={props.user} />;
  else if (path === "/admin" && isAdmin) page = <Admin />;
  else page = <Chat key={current ?? "new"} id={current} user={props.user} />;

  return (
    <div class={`shell ${menu ? "menu-open" : ""}`}>
      {!online && (
        <div class="banner" role="status">
          You are offline. Answers keep running on the server; this page reconnects by itself.
        </div>
      )}
      <button class="menu-toggle icon" aria-label="Conversations" aria-expanded={menu} onClick={() => setMenu(!menu)}>
        ☰
      </button>
      <nav class="sidebar" aria-label="Conversations">
        <button class="primary new" onClick={() => go("/")}>
          + New chat
        </button>
        <input
          ref={search}
          type="search"
          class="search"
          placeholder="Search (Ctrl+K)"
          aria-label="Search conversations"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
          onKeyDown={(e) => e.key === "Escape" && setQuery("")}
        />
        <div class="list">
          {listError && <p class="error" role="alert">{listError}</p>}
          {hits !== null ? (
            <ul aria-label="Search results">
              {hits.length === 0 && <li class="muted pad">No match.</li>}
              {hits.map((h) => (
                <li key={h.message_id}>
                  <a href={`/c/${h.conversation_id}`} onClick={(e) => (e.preventDefault(), go(`/c/${h.conversation_id}`))}>
                    <span class="title">{h.title || "Untitled"}</span>
                    <span class="snippet">{h.snippet.replace(/\*\*/g, "")}</span>
                  </a>
                </li>
              ))}
            </ul>
          ) : (
            groups.map(([g, items]) => (
              <section key={g} aria-label={g}>
                <h2 class="day">{g}</h2>
                <ul>
                  {items.map((c) => (
                    <li key={c.id}>
                      <a
                        href={`/c/${c.id}`}
                        aria-current={c.id === current ? "page" : undefined}
                        onClick={(e) => (e.preventDefault(), go(`/c/${c.id}`))}
                      >
                        <span class="title">{c.title || "Untitled"}</span>
                      </a>
                    </li>
                  ))}
                </ul>
              </section>
            ))
          )}
        </div>
        <div class="me">
          <span class="who" title={props.user.kind}>
            {props.user.name}
          </span>
          <a href="/settings" onClick={(e) => (e.preventDefault(), go("/settings"))}>
            Settings
          </a>
          {isAdmin && (
            <a href="/admin" onClick={(e) => (e.preventDefault(), go("/admin"))}>
              Admin
            </a>
          )}
          {props.user.kind === "user" && (
            <button class="link" onClick={logout}>
              Log out
            </button>
          )}
        </div>
      </nav>
      <main class="page" id="main">
        {page}
      </main>
    </div>
  );
}
