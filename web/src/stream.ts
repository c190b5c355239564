// Attaches to a UI generation running in the gateway (SSE over fetch, so errors keep
// their status): text arrives as `delta` events whose id is the byte offset so far,
// and the stream ends with `done` or `error`. A dropped connection is resumed from the
// last offset (Last-Event-ID) once the network is back; nothing is asked twice of
// the model, the gateway holds the answer.

import { errorOf } from "./api";

export type End =
  | { kind: "done"; finish_reason: string; message_id: string | null }
  | { kind: "error"; message: string; status: number; message_id: string | null };

export type Handlers = {
  text(all: string): void;
  end(end: End): void;
  connection(ok: boolean): void;
};

const encoder = new TextEncoder();

export function attach(conversation: string, message: string, model: string, h: Handlers): () => void {
  let text = "";
  let offset = 0; // bytes of UTF-8, as the server counts
  let closed = false;
  let ctrl: AbortController | null = null;
  let backoff = 250;

  const run = async () => {
    while (!closed) {
      ctrl = new AbortController();
      try {
        const r = await fetch(`/v1/conversations/${conversation}/generations/${message}?model=${encodeURIComponent(model)}`, {
          headers: { accept: "text/event-stream", "last-event-id": String(offset) },
          credentials: "same-origin",
          signal: ctrl.signal,
        });
        if (!r.ok) {
          const e = await errorOf(r);
          closed = true;
          h.end({ kind: "error", message: e.message, status: e.status, message_id: null });
          return;
        }
        h.connection(true);
        backoff = 250;
        const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut: number;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = "message";
            let data = "";
            for (const line of frame.split("\n")) {
              if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trimStart();
            }
            if (!data) continue;
            const body = JSON.parse(data);
            if (event === "delta") {
              text += body.text;
              offset += encoder.encode(body.text).length;
              h.text(text);
            } else if (event === "done") {
              closed = true;
              h.end({ kind: "done", finish_reason: body.finish_reason, message_id: body.message_id });
              return;
            } else if (event === "error") {
              closed = true;
              h.end({ kind: "error", message: body.message, status: body.status, message_id: body.message_id });
              return;
            }
          }
        }
      } catch {
        if (closed) return;
      }
      // The connection dropped before the end: come back when the network is.
      h.connection(false);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, backoff);
        const on = () => {
          clearTimeout(t);
          resolve();
        };
        window.addEventListener("online", on, { once: true });
      });
      backoff = Math.min(backoff * 2, 5000);
    }
  };
  run();
  return () => {
    closed = true;
    ctrl?.abort();
  };
}
