// Model output as Markdown, made safe: raw HTML in the text is shown as text, the
// result is sanitized by DOMPurify (no scripts, no event handlers, no javascript:
// links), code blocks are highlighted by highlight.js (a few common languages).

import DOMPurify from "dompurify";
import { Marked, type Tokens } from "marked";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import cpp from "highlight.js/lib/languages/cpp";
import css from "highlight.js/lib/languages/css";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";

for (const [name, lang] of Object.entries({ bash, c, cpp, css, go, java, javascript, json, python, rust, sql, typescript, xml, yaml })) {
  hljs.registerLanguage(name, lang);
}
hljs.registerAliases(["sh", "shell", "zsh"], { languageName: "bash" });
hljs.registerAliases(["js", "jsx"], { languageName: "javascript" });
hljs.registerAliases(["ts", "tsx"], { languageName: "typescript" });
hljs.registerAliases(["py"], { languageName: "python" });
hljs.registerAliases(["rs"], { languageName: "rust" });
hljs.registerAliases(["html", "svg"], { languageName: "xml" });
hljs.registerAliases(["yml", "toml"], { languageName: "yaml" });

const escape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML from the model is text, never markup.
    html(token: Tokens.HTML | Tokens.Tag) {
      return escape(token.text);
    },
    code(token: Tokens.Code) {
      const lang = (token.lang ?? "").split(/\s/)[0].toLowerCase();
      const body = lang && hljs.getLanguage(lang)
        ? hljs.highlight(token.text, { language: lang, ignoreIllegals: true }).value
        : escape(token.text);
      const label = lang ? `<span class="lang">${escape(lang)}</span>` : "";
      return `<pre>${label}<code class="hljs">${body}</code></pre>`;
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const cache = new Map<string, string>();

/** Sanitized HTML for `text`; finished messages are cached. */
export function render(text: string, final = true): string {
  const hit = final ? cache.get(text) : undefined;
  if (hit !== undefined) return hit;
  const raw = marked.parse(text, { async: false }) as string;
  const html = DOMPurify.sanitize(raw, {
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "img"],
    FORBID_ATTR: ["style"],
  });
  if (final) {
    if (cache.size > 2000) cache.clear();
    cache.set(text, html);
  }
  return html;
}
