// One conversation: its messages as a tree (branches with arrows), the answers being
// generated in the gateway (attached over SSE, re-attached after a reload), and the
// composer with the model picker and per-chat parameters.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, type Message, type User } from "./api";
import { navigate } from "./main";
import { attach, type End } from "./stream";
import { render } from "./markdown";
import { ModelPicker } from "./models";

// An answer being generated, keyed by `${user message id}|${model}` (several models
// may answer one message side by side).
type Live = { message: string; text: string; model: string; error?: string; status?: number; since: number; first?: number };
const liveKey = (message: string, model: string) => `${message}|${model}`;
type Params = { system: string; temperature: string; max_tokens: string };

const WINDOW = 60;

function loadParams(id: string | null): Params {
  try {
    return { system: "", temperature: "", max_tokens: "", ...JSON.parse(localStorage.getItem(`sluice.params.${id ?? "new"}`) ?? "{}") };
  } catch {
    return { system: "", temperature: "", max_tokens: "" };
  }
}

export function Chat(props: { id: string | null; user: User }) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [title, setTitle] = useState("");
  const [state, setState] = useState<"loading" | "ready" | "missing" | "failed">(props.id ? "loading" : "ready");
  const [loadError, setLoadError] = useState("");
  const [selected, setSelected] = useState<Record<string, string>>({});
  const [live, setLive] = useState<Record<string, Live>>({});
  const [draft, setDraft] = useState("");
  const [model, setModel] = useState(localStorage.getItem("sluice.model") ?? "");
  // The second model of side by side stays chosen across chats (like the model).
  const [compare, setCompareState] = useState(sessionStorage.getItem("sluice.compare") ?? "");
  const setCompare = (m: string) => {
    if (m) sessionStorage.setItem("sluice.compare", m);
    else sessionStorage.removeItem("sluice.compare");
    setCompareState(m);
  };
  const [params, setParams] = useState<Params>(loadParams(props.id));
  const [showParams, setShowParams] = useState(false);
  const [sendError, setSendError] = useState("");
  const [windowSize, setWindowSize] = useState(WINDOW);
  const [editing, setEditing] = useState<string | null>(null);
  const [connected, setConnected] = useState(true);
  const detach = useRef(new Map<string, () => void>());
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const input = useRef<HTMLTextAreaElement>(null);

  const load = async (id: string) => {
    try {
      const c = await api<{ conversation: { title: string; model: string }; messages: Message[] }>("GET", `/v1/conversations/${id}`);
      setMessages(c.messages);
      setTitle(c.conversation.title);
      if (!localStorage.getItem("sluice.model") && c.conversation.model) setModel(c.conversation.model);
      setState("ready");
      return c.messages;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setState("missing");
      else {
        setLoadError((e as Error).message);
        setState("failed");
      }
      return null;
    }
  };

  const follow = (conversation: string, messageId: string, forModel: string) => {
    const key = liveKey(messageId, forModel);
    if (detach.current.has(key)) return;
    setLive((l) => ({ ...l, [key]: { message: messageId, text: l[key]?.text ?? "", model: forModel, since: performance.now() } }));
    let pending = "";
    let frame = 0;
    const stop = attach(conversation, messageId, forModel, {
      text(all) {
        pending = all;
        if (!frame) {
          frame = requestAnimationFrame(() => {
            frame = 0;
            setLive((l) => ({ ...l, [key]: { ...l[key], text: pending, first: l[key]?.first ?? performance.now() } }));
          });
        }
      },
      connection: setConnected,
      async end(end: End) {
        cancelAnimationFrame(frame);
        detach.current.delete(key);
        setConnected(true);
        if (end.message_id) {
          await load(conversation);
          // While another model still answers, keep showing the columns.
          const others = [...detach.current.keys()].some((k) => k.startsWith(`${messageId}|`));
          setSelected((s) => ({ ...s, [messageId]: others ? "" : end.message_id! }));
          setLive((l) => {
            const { [key]: _, ...rest } = l;
            return rest;
          });
        } else {
          const error = end.kind === "error" ? end.message : "the answer was not stored";
          setLive((l) => ({ ...l, [key]: { ...l[key], text: pending, error, status: end.kind === "error" ? end.status : 0 } }));
        }
        window.dispatchEvent(new Event("sluice:conversations"));
      },
    });
    detach.current.set(key, stop);
  };

  useEffect(() => {
    if (props.id) {
      const id = props.id;
      load(id).then(async (msgs) => {
        if (!msgs) return;
        try {
          const g = await api<{ data: { message_id: string; model: string; running: boolean }[] }>("GET", `/v1/conversations/${id}/generations`);
          // Finished ones too: one may have ended between the two reads (its replay
          // ends at once and reloads the conversation with the stored answer).
          for (const run of g.data) if (run.running || !msgs.some((m) => m.parent_id === run.message_id)) follow(id, run.message_id, run.model);
        } catch {
          // the list is a convenience: the conversation itself loaded
        }
      });
    }
    return () => {
      for (const stop of detach.current.values()) stop();
      detach.current.clear();
    };
  }, [props.id]);

  useEffect(() => {
    localStorage.setItem(`sluice.params.${props.id ?? "new"}`, JSON.stringify(params));
  }, [params]);

  // The tree: children by parent, the chosen path from the root.
  const children = new Map<string, Message[]>();
  for (const m of messages) {
    const k = m.parent_id ?? "";
    (children.get(k) ?? children.set(k, []).get(k)!).push(m);
  }
  const path: Message[] = [];
  for (let parent = ""; ; ) {
    const kids = children.get(parent);
    // "" chooses no child: a new answer to this message is being generated.
    if (!kids?.length || selected[parent] === "") break;
    const pick = kids.find((k) => k.id === selected[parent]) ?? kids[kids.length - 1];
    path.push(pick);
    parent = pick.id;
  }
  const last = path[path.length - 1];
  const liveHere = last ? Object.entries(live).filter(([, l]) => l.message === last.id) : [];
  const running = Object.entries(live).some(([key, l]) => !l.error && detach.current.has(key));

  // Earlier messages appear above: keep what was on screen where it was.
  const fromBottom = useRef<number | null>(null);
  const earlier = () => {
    const el = scroller.current;
    if (el) fromBottom.current = el.scrollHeight - el.scrollTop;
    setWindowSize((w) => w + WINDOW);
  };
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (fromBottom.current !== null) {
      el.scrollTop = el.scrollHeight - fromBottom.current;
      fromBottom.current = null;
    } else if (stick.current) el.scrollTop = el.scrollHeight;
  });

  const start = async (body: { parent_id: string | null; content?: string }) => {
    setSendError("");
    if (!model) return setSendError("Choose a model first.");
    localStorage.setItem("sluice.model", model);
    const temperature = params.temperature === "" ? undefined : Number(params.temperature);
    const max_tokens = params.max_tokens === "" ? undefined : Number(params.max_tokens);
    let id = props.id;
    try {
      if (!id) {
        const title = (body.content ?? "").trim().slice(0, 80);
        const c = await api<{ id: string }>("POST", "/v1/conversations", { title, model });
        id = c.id;
        localStorage.setItem(`sluice.params.${id}`, JSON.stringify(params));
      }
      const r = await api<{ message_id: string }>("POST", `/v1/conversations/${id}/generations`, {
        ...body,
        model,
        system: params.system || undefined,
        temperature,
        max_tokens,
      });
      stick.current = true;
      // Side by side: the second model answers the same message at the same time.
      const second = body.content !== undefined && compare && compare !== model ? compare : null;
      if (second) {
        await api("POST", `/v1/conversations/${id}/generations`, {
          parent_id: r.message_id,
          model: second,
          system: params.system || undefined,
          temperature,
          max_tokens,
        }).catch((e) => setSendError(`${second}: ${(e as Error).message}`));
      }
      if (id !== props.id) {
        window.dispatchEvent(new Event("sluice:conversations"));
        navigate(`/c/${id}`);
        return true;
      }
      if (body.content !== undefined) {
        const mine: Message = { id: r.message_id, parent_id: body.parent_id, role: "user", content: body.content, created_at: Date.now() };
        setMessages((m) => [...m, mine]);
        setSelected((s) => ({ ...s, [body.parent_id ?? ""]: r.message_id }));
      } else {
        setSelected((s) => ({ ...s, [r.message_id]: "" }));
      }
      follow(id, r.message_id, model);
      if (second) follow(id, r.message_id, second);
      return true;
    } catch (e) {
      setSendError((e as Error).message);
      if (id && id !== props.id) navigate(`/c/${id}`);
      return false;
    }
  };

  const send = async () => {
    const text = draft.trim();
    if (!text || running) return;
    if (await start({ parent_id: last?.id ?? null, content: text })) setDraft("");
  };
  const stopAll = () => {
    for (const [key, l] of Object.entries(live)) {
      if (detach.current.has(key)) {
        api("POST", `/v1/conversations/${props.id}/generations/${l.message}/stop?model=${encodeURIComponent(l.model)}`).catch(() => {});
      }
    }
  };
  const retry = (userMessage: string) => {
    setLive((l) => Object.fromEntries(Object.entries(l).filter(([, v]) => v.message !== userMessage)));
    start({ parent_id: userMessage });
  };
  const keys = (e: KeyboardEvent) => {
    // Esc (stop) is handled for the whole page below.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  };
  useEffect(() => {
    const esc = (e: KeyboardEvent) => e.key === "Escape" && running && stopAll();
    window.addEventListener("keydown", esc);
    return () => window.removeEventListener("keydown", esc);
  }, [running, live]);

  const rename = async () => {
    const t = prompt("Rename conversation", title);
    if (t === null || !props.id) return;
    await api("PATCH", `/v1/conversations/${props.id}`, { title: t });
    setTitle(t.trim());
    window.dispatchEvent(new Event("sluice:conversations"));
  };
  const remove = async () => {
    if (!props.id || !confirm("Delete this conversation?")) return;
    await api("DELETE", `/v1/conversations/${props.id}`);
    window.dispatchEvent(new Event("sluice:conversations"));
    navigate("/");
  };

  if (state === "missing") {
    return (
      <div class="empty">
        <h1>Conversation not found</h1>
        <p class="muted">It does not exist, or it is not yours.</p>
        <button onClick={() => navigate("/")}>New chat</button>
      </div>
    );
  }
  if (state === "failed") {
    return (
      <div class="empty">
        <h1>Could not load this conversation</h1>
        <p role="alert" class="error">{loadError}</p>
        <button onClick={() => props.id && (setState("loading"), load(props.id))}>Retry</button>
      </div>
    );
  }

  const shown = path.slice(Math.max(0, path.length - windowSize));
  const hidden = path.length - shown.length;

  return (
    <div class="chat">
      <header class="chat-head">
        <h1 class="chat-title">{props.id ? title || "Untitled" : "New chat"}</h1>
        {props.id && (
          <div class="actions">
            <button class="small" onClick={rename}>Rename</button>
            <a class="button small" href={`/v1/conversations/${props.id}/export`} download>
              Export
            </a>
            <button class="small danger" onClick={remove}>Delete</button>
          </div>
        )}
      </header>
      <div
        class="messages"
        ref={scroller}
        role="log"
        aria-live="polite"
        aria-label="Messages"
        aria-busy={state === "loading" || running}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
          if (el.scrollTop < 200 && hidden > 0 && fromBottom.current === null) earlier();
        }}
      >
        {state === "loading" && <p class="muted pad">Loading…</p>}
        {state === "ready" && path.length === 0 && !props.id && (
          <div class="hello">
            <h2>What can I help with?</h2>
            <p class="muted">Enter sends · Shift+Enter adds a line · Esc stops · Ctrl+K searches</p>
          </div>
        )}
        {hidden > 0 && (
          <button class="link earlier" onClick={earlier}>
            Show {Math.min(hidden, WINDOW)} earlier messages
          </button>
        )}
        {shown.map((m) => {
          const siblings = children.get(m.parent_id ?? "") ?? [m];
          const at = siblings.findIndex((s) => s.id === m.id);
          const choose = (i: number) => setSelected((s) => ({ ...s, [m.parent_id ?? ""]: siblings[i].id }));
          return (
            <MessageView
              key={m.id}
              m={m}
              branch={siblings.length > 1 ? { at, of: siblings.length, choose } : null}
              editing={editing === m.id}
              onEdit={() => setEditing(m.id)}
              onCancelEdit={() => setEditing(null)}
              onResend={async (text) => {
                setEditing(null);
                await start({ parent_id: m.parent_id, content: text });
              }}
              onRegenerate={() => m.parent_id && start({ parent_id: m.parent_id })}
              onRetry={() => m.parent_id && retry(m.parent_id)}
              busy={running}
            />
          );
        })}
        {liveHere.length > 0 && (
          <div class={liveHere.length > 1 ? "compare" : ""}>
            {liveHere.map(([key, l]) => (
              <LiveView key={key} live={l} running={detach.current.has(key)} connected={connected} onRetry={() => retry(l.message)} columns={liveHere.length > 1} />
            ))}
          </div>
        )}
      </div>
      <form
        class="composer"
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
      >
        {sendError && (
          <p class="error" role="alert">
            {sendError}
          </p>
        )}
        {showParams && (
          <fieldset class="params">
            <legend>Parameters for this chat</legend>
            <label>
              System prompt
              <textarea rows={2} value={params.system} onInput={(e) => setParams({ ...params, system: e.currentTarget.value })} />
            </label>
            <label>
              Temperature
              <input type="number" min="0" max="2" step="0.1" value={params.temperature} placeholder="default" onInput={(e) => setParams({ ...params, temperature: e.currentTarget.value })} />
            </label>
            <label>
              Max tokens
              <input type="number" min="1" step="1" value={params.max_tokens} placeholder="default" onInput={(e) => setParams({ ...params, max_tokens: e.currentTarget.value })} />
            </label>
          </fieldset>
        )}
        <div class="row">
          <ModelPicker value={model} onChange={setModel} admin={props.user.role === "admin"} />
          <ModelPicker value={compare} onChange={setCompare} admin={false} optional label="Compare with" />
          <button type="button" class="small" aria-expanded={showParams} onClick={() => setShowParams(!showParams)}>
            Parameters
          </button>
        </div>
        <div class="row input-row">
          <textarea
            ref={input}
            class="input"
            rows={2}
            aria-label="Message"
            placeholder="Message Sluice…"
            value={draft}
            onInput={(e) => setDraft(e.currentTarget.value)}
            onKeyDown={keys}
            autofocus
          />
          {running ? (
            <button type="button" class="stop" onClick={stopAll} aria-label="Stop generating">
              Stop
            </button>
          ) : (
            <button type="submit" class="primary send" disabled={!draft.trim()} aria-label="Send message">
              Send
            </button>
          )}
        </div>
      </form>
    </div>
  );
}

function Markdown(props: { text: string; final: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  useLayoutEffect(() => {
    for (const pre of box.current?.querySelectorAll("pre") ?? []) {
      if (pre.querySelector(".copy")) continue;
      const b = document.createElement("button");
      b.type = "button";
      b.className = "copy small";
      b.textContent = "Copy";
      b.setAttribute("aria-label", "Copy code");
      b.addEventListener("click", () => {
        navigator.clipboard?.writeText(pre.querySelector("code")?.textContent ?? "").then(() => (b.textContent = "Copied"));
      });
      pre.prepend(b);
    }
  });
  return <div class="md" ref={box} dangerouslySetInnerHTML={{ __html: render(props.text, props.final) }} />;
}

type Branch = { at: number; of: number; choose(i: number): void } | null;

function MessageView(props: {
  m: Message;
  branch: Branch;
  editing: boolean;
  busy: boolean;
  onEdit(): void;
  onCancelEdit(): void;
  onResend(text: string): void;
  onRegenerate(): void;
  onRetry(): void;
}) {
  const { m, branch } = props;
  const [text, setText] = useState(m.content);
  const user = m.role === "user";
  const stats =
    m.role === "assistant" && m.duration_ms
      ? [m.model, m.ttft_ms != null ? `first token ${m.ttft_ms} ms` : "", m.completion_tokens && m.duration_ms ? `${((m.completion_tokens * 1000) / m.duration_ms).toFixed(1)} tok/s` : ""].filter(Boolean).join(" · ")
      : m.model ?? "";
  return (
    <article class={`msg ${m.role}`} aria-label={user ? "You" : "Assistant"}>
      {props.editing ? (
        <form
          class="edit"
          onSubmit={(e) => {
            e.preventDefault();
            if (text.trim()) props.onResend(text.trim());
          }}
        >
          <textarea aria-label="Edit message" value={text} rows={3} onInput={(e) => setText(e.currentTarget.value)} />
          <div class="row">
            <button type="submit" class="primary small">Send as new branch</button>
            <button type="button" class="small" onClick={props.onCancelEdit}>Cancel</button>
          </div>
        </form>
      ) : user ? (
        <div class="bubble">{m.content}</div>
      ) : (
        <Markdown text={m.content} final />
      )}
      {m.error === "stopped" && <p class="muted stopped">Stopped.</p>}
      {m.error && m.error !== "stopped" && m.finish_reason == null && (
        <div class="failure" role="alert">
          <span>{m.error}</span>
          <button class="small" onClick={props.onRetry} disabled={props.busy}>
            Retry
          </button>
        </div>
      )}
      <div class="meta">
        {branch && (
          <span class="branches">
            <button class="icon" aria-label="Previous version" disabled={branch.at === 0} onClick={() => branch.choose(branch.at - 1)}>
              ‹
            </button>
            <span>
              {branch.at + 1}/{branch.of}
            </span>
            <button class="icon" aria-label="Next version" disabled={branch.at === branch.of - 1} onClick={() => branch.choose(branch.at + 1)}>
              ›
            </button>
          </span>
        )}
        {stats && <span class="muted">{stats}</span>}
        <button class="link" onClick={() => navigator.clipboard?.writeText(m.content)}>
          Copy
        </button>
        {user && !props.busy && (
          <button class="link" onClick={props.onEdit}>
            Edit
          </button>
        )}
        {!user && !props.busy && (
          <button class="link" onClick={props.onRegenerate}>
            Regenerate
          </button>
        )}
      </div>
    </article>
  );
}

function LiveView(props: { live: Live; running: boolean; connected: boolean; columns: boolean; onRetry(): void }) {
  const { live } = props;
  // Measured here, from when this page attached: exact for a fresh answer, later for a
  // re-attached one; tokens estimated as characters / 4 (the stored answer has the
  // gateway's own figures).
  const now = performance.now();
  const ttft = live.first !== undefined ? Math.round(live.first - live.since) : null;
  const rate = live.first !== undefined && now - live.first > 200 ? (live.text.length / 4 / ((now - live.first) / 1000)).toFixed(0) : null;
  return (
    <article class="msg assistant live" aria-label={props.columns ? `Answer of ${live.model}` : "Assistant"} aria-busy={props.running}>
      {props.columns && <h3 class="column-head">{live.model}</h3>}
      {live.text ? <Markdown text={live.text} final={false} /> : props.running && <div class="typing" aria-label="Waiting for the first token">…</div>}
      {!props.connected && props.running && <p class="muted">Connection lost; reconnecting…</p>}
      {live.error && (
        <div class="failure" role="alert">
          <span>{live.error}</span>
          <button class="small" onClick={props.onRetry}>
            Retry
          </button>
        </div>
      )}
      <div class="meta">
        <span class="muted">
          {[props.columns ? "" : live.model, ttft !== null ? `first token ${ttft} ms` : "", rate ? `≈ ${rate} tok/s` : ""].filter(Boolean).join(" · ")}
        </span>
      </div>
    </article>
  );
}
