// The official `openai` Node SDK, unchanged, against a gateway in front of the mock
// upstream (run by crates/sluice/tests/it/clients.rs): reasoning-model parameters,
// streaming, token-array embeddings with `dimensions`, error classes and retries.
import assert from "node:assert/strict";
import OpenAI from "openai";

const base = process.argv[2];
const c = new OpenAI({ baseURL: base, apiKey: "unused", maxRetries: 0 });

const r = await c.chat.completions.create({
  model: "mock-model",
  messages: [{ role: "developer", content: "be brief" }, { role: "user", content: "hi", name: "ann" }],
  max_completion_tokens: 3,
  reasoning_effort: "low",
  metadata: { k: "v" },
});
assert.equal(r.choices[0].message.content, "t0 t1 t2 ");
assert.equal(r.choices[0].message.refusal, null);
assert.equal(r.usage.completion_tokens, 3);

const parts = [];
let usage = null;
const stream = await c.chat.completions.create({
  model: "mock-model",
  messages: [{ role: "user", content: "hi" }],
  max_completion_tokens: 4,
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) if (choice.delta.content) parts.push(choice.delta.content);
}
assert.equal(parts.join(""), "t0 t1 t2 t3 ");
assert.equal(usage.completion_tokens, 4);

const e = await c.embeddings.create({ model: "mock-model", input: [[1, 2, 3], [4, 5]], dimensions: 16 });
assert.equal(e.data.length, 2);
// The SDK asks for base64 floats by default; it decodes them back into numbers.
assert.ok(e.data[0].embedding.every((x) => typeof x === "number"));

assert.deepEqual((await c.models.list()).data.map((m) => m.id), ["mock-model"]);

await assert.rejects(
  c.chat.completions.create({ model: "mock-model", messages: [{ role: "user", content: "[mock mode=status:400]" }] }),
  (err) => err instanceof OpenAI.BadRequestError && err.code === "context_length_exceeded" && err.param === "messages",
);
await assert.rejects(
  c.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
  (err) => err instanceof OpenAI.NotFoundError && /nope/.test(err.message),
);
// A refused upstream credential is not retried, however many retries the client allows.
const retrying = new OpenAI({ baseURL: base, apiKey: "unused", maxRetries: 3 });
await assert.rejects(
  retrying.chat.completions.create({ model: "mock-model", messages: [{ role: "user", content: "[mock mode=status:401]" }] }),
  (err) => err instanceof OpenAI.InternalServerError && err.status === 502 && /credentials/.test(err.message),
);
// A stream the upstream breaks ends with an error the SDK raises, not a silent stop.
await assert.rejects(async () => {
  const s = await c.chat.completions.create({
    model: "mock-model",
    stream: true,
    messages: [{ role: "user", content: "[mock mode=drop_after:1]" }],
  });
  for await (const _ of s);
});
console.log("client-ok");
