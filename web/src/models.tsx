// The model picker: every model the gateway serves to this caller; admins also see
// the state of the backend serving it (health, breaker, requests in flight).
import { useEffect, useState } from "preact/hooks";
import { api } from "./api";

type Model = { id: string; owned_by: string };
type Backend = { name: string; kind: string; breaker: string; healthy: boolean; outstanding: number; p95_ttft_ms: number | null };

export function ModelPicker(props: { value: string; onChange(m: string): void; admin: boolean; optional?: boolean; label?: string }) {
  const [models, setModels] = useState<Model[]>([]);
  const [backends, setBackends] = useState<Record<string, Backend>>({});
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState<Set<string>>(new Set());
  useEffect(() => {
    // Embedded models in memory now (Ollama's /api/ps); others are remote.
    api<{ models: { name: string }[] }>("GET", "/api/ps")
      .then((r) => setLoaded(new Set(r.models.map((m) => m.name.replace(/:latest$/, "")))))
      .catch(() => {});
    api<{ data: Model[] }>("GET", "/v1/models")
      .then((r) => {
        setModels(r.data);
        if (!props.optional && !r.data.some((m) => m.id === props.value) && r.data.length) props.onChange(r.data[0].id);
      })
      .catch((e) => setError(e.message));
    if (!props.admin) return;
    // Backend state changes with every answer: read it again when one ends.
    const refresh = () =>
      api<{ backends: Backend[] }>("GET", "/admin/backends")
        .then((r) => setBackends(Object.fromEntries(r.backends.map((b) => [b.name, b]))))
        .catch(() => {});
    refresh();
    window.addEventListener("sluice:conversations", refresh);
    return () => window.removeEventListener("sluice:conversations", refresh);
  }, []);
  const state = (m: Model) => {
    const b = backends[m.owned_by];
    if (!b) return loaded.has(m.id) ? " — loaded" : "";
    const health = b.breaker === "open" ? "breaker open" : b.healthy ? "healthy" : "unhealthy";
    const where = b.kind === "agent" ? "agent online" : b.kind;
    return ` — ${where}: ${health}${loaded.has(m.id) ? ", loaded" : ""}${b.outstanding ? `, ${b.outstanding} running` : ""}`;
  };
  if (error) return <span class="error" role="alert">Models: {error}</span>;
  return (
    <label class="picker">
      <span class={props.optional ? "muted small-label" : "sr-only"}>{props.label ?? "Model"}</span>
      <select aria-label={props.label ?? "Model"} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        {props.optional ? <option value="">nothing</option> : models.length === 0 && <option value="">No models</option>}
        {models.map((m) => (
          <option key={m.id} value={m.id}>
            {m.id}
            {state(m)}
          </option>
        ))}
      </select>
    </label>
  );
}
