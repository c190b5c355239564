// Vite builds the UI into dist/ (committed, embedded in the binary). Deterministic:
// content-hashed names, no timestamps, no inline scripts (the CSP forbids them).
import { defineConfig } from "vite";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    modulePreload: { polyfill: false },
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    sourcemap: false,
  },
  server: { proxy: { "/v1": "http://127.0.0.1:8080", "/auth": "http://127.0.0.1:8080", "/admin/": "http://127.0.0.1:8080" } },
});
