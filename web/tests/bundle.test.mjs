// The chat page's JavaScript and CSS stay within 150 KB gzip-compressed (issue 12).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

test("JS + CSS of the bundle are at most 150 KB gzip", () => {
  const dir = new URL("../dist/assets/", import.meta.url).pathname;
  let total = 0;
  for (const f of readdirSync(dir)) if (/\.(js|css)$/.test(f)) total += gzipSync(readFileSync(join(dir, f)), { level: 9 }).length;
  assert.ok(total > 10_000, "the bundle is there");
  assert.ok(total <= 150 * 1024, `${total} bytes`);
});
