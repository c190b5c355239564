// The gateway's JSON API as the UI uses it: cookie session + CSRF header on state
// changes, errors turned into ApiError with the server's own message.

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

let csrf = "";
export function setCsrf(token: string) {
  csrf = token;
}

export type User = { id: string | null; name: string; role: string; kind: string };
export type Conversation = { id: string; title: string; model: string; created_at: number; updated_at: number };
export type Message = {
  id: string;
  parent_id: string | null;
  role: string;
  content: string;
  model?: string | null;
  completion_tokens?: number | null;
  ttft_ms?: number | null;
  duration_ms?: number | null;
  finish_reason?: string | null;
  error?: string | null;
  created_at: number;
};

async function errorOf(r: Response): Promise<ApiError> {
  let message = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    const e = body?.error;
    message = typeof e === "string" ? e : e?.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(r.status, message);
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let r: Response;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch {
    throw new ApiError(0, "cannot reach the server");
  }
  if (!r.ok) {
    const e = await errorOf(r);
    // The session ended (expired, logged out elsewhere, user disabled): back to login.
    if (r.status === 401 && !path.startsWith("/auth/")) window.dispatchEvent(new Event("sluice:signedout"));
    throw e;
  }
  const type = r.headers.get("content-type") ?? "";
  return (type.includes("json") ? r.json() : r.text()) as Promise<T>;
}

export { errorOf };
