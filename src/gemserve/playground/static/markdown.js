// A small Markdown renderer and code highlighter, written for this page.
//
// Why not marked + DOMPurify + highlight.js: the playground is served by the Python package
// and must work offline, from a wheel, with no npm step and no CDN. A model's answer needs a
// small subset of Markdown, and building DOM nodes directly (createElement + textContent,
// never an HTML string) makes the renderer escape-first by construction: no string of the model's
// ever becomes markup, so there is nothing to sanitise. Links keep http(s) and mailto only.
//
// Blocks: fenced code (```lang), ATX headings, bullet and numbered lists, block quotes,
// horizontal rules, paragraphs. Inline: `code`, **strong**, *em* / _em_, [text](url), bare
// http(s) URLs.

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function safeHref(raw) {
  try {
    const url = new URL(raw, document.baseURI);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

// ----- inline ---------------------------------------------------------------------------------

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*]+?)\*\*|__([^_]+?)__|\*([^*\s][^*]*?)\*|(?<![\w])_([^_\s][^_]*?)_(?![\w])|\[([^\]]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

export function renderInline(text, parent) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    last = match.index + match[0].length;
    const [, ticks, code, strong1, strong2, em1, em2, linkText, linkUrl, bare] = match;
    if (ticks) {
      parent.append(el("code", "inline", code.replace(/^ (.*) $/s, "$1")));
    } else if (strong1 !== undefined || strong2 !== undefined) {
      const node = el("strong");
      renderInline(strong1 ?? strong2, node);
      parent.append(node);
    } else if (em1 !== undefined || em2 !== undefined) {
      const node = el("em");
      renderInline(em1 ?? em2, node);
      parent.append(node);
    } else if (linkText !== undefined) {
      parent.append(link(linkText, linkUrl, match[0]));
    } else if (bare !== undefined) {
      parent.append(link(bare, bare, bare));
    }
  }
  if (last < text.length) parent.append(text.slice(last));
}

function link(text, url, original) {
  const href = safeHref(url);
  if (href === null) return document.createTextNode(original);
  const node = el("a");
  node.href = href;
  node.rel = "noopener noreferrer nofollow";
  node.target = "_blank";
  renderInline(text, node);
  return node;
}

// ----- blocks ---------------------------------------------------------------------------------

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^ {0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;

export function renderMarkdown(source) {
  const root = document.createDocumentFragment();
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) {
      const p = el("p");
      paragraph.forEach((line, n) => {
        if (n) p.append(el("br"));
        renderInline(line.trim(), p);
      });
      root.append(p);
      paragraph = [];
    }
  };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const fence = m[1];
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence)) code.push(lines[i++]);
      i += 1; // the closing fence (or the end of a streaming answer)
      root.append(codeBlock(code.join("\n"), m[2]));
      continue;
    }
    if ((m = HEADING.exec(line))) {
      flush();
      const h = el(`h${Math.min(6, m[1].length + 2)}`);
      renderInline(m[2], h);
      root.append(h);
    } else if (RULE.test(line)) {
      flush();
      root.append(el("hr"));
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      flush();
      const numbered = !BULLET.test(line);
      const list = el(numbered ? "ol" : "ul");
      const start = numbered ? Number(NUMBERED.exec(line)[1]) : 1;
      if (numbered && start !== 1) list.start = start;
      while (i < lines.length) {
        const item = (numbered ? NUMBERED : BULLET).exec(lines[i]);
        if (item) {
          const li = el("li");
          renderInline(numbered ? item[2] : item[1], li);
          list.append(li);
        } else if (/^\s{2,}\S/.test(lines[i]) && list.lastChild) {
          list.lastChild.append(" ");
          renderInline(lines[i].trim(), list.lastChild);
        } else {
          break;
        }
        i += 1;
      }
      root.append(list);
      continue;
    } else if (QUOTE.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        quoted.push(m[1]);
        i += 1;
      }
      const block = el("blockquote");
      block.append(renderMarkdown(quoted.join("\n")));
      root.append(block);
      continue;
    } else if (line.trim() === "") {
      flush();
    } else {
      paragraph.push(line);
    }
    i += 1;
  }
  flush();
  return root;
}

// ----- code -----------------------------------------------------------------------------------

const KEYWORDS = new Set(
  (
    "and as assert async await break case catch class const continue def default del do elif " +
    "else enum except export extends false False final finally fn for from func function go " +
    "if impl import in interface is lambda let loop match mod mut new nil None nonlocal not " +
    "null or package pass pub raise return self static struct super switch this throw true " +
    "True try type typeof use var void while with yield"
  ).split(" "),
);

// One pass over the source: comments, strings, numbers, words, anything else.
const TOKEN =
  /(\/\/[^\n]*|#[^\n]*|\/\*[\s\S]*?(?:\*\/|$)|--[^\n]*)|("""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|`(?:[^`\\]|\\.)*`?)|(\b\d[\d_]*(?:\.\d+)?(?:e[+-]?\d+)?\b|\b0x[\da-f]+\b)|([A-Za-z_$][\w$]*)/gi;

const HASH_COMMENTS = new Set(["python", "py", "sh", "bash", "shell", "ruby", "rb", "yaml", "yml", "toml", "r", ""]);
const DASH_COMMENTS = new Set(["sql", "lua", "haskell", "hs"]);

export function highlight(code, language = "") {
  const lang = language.toLowerCase();
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of code.matchAll(TOKEN)) {
    const [text, comment, string, number, word] = match;
    let kind = null;
    if (comment !== undefined) {
      const hash = comment.startsWith("#");
      const dash = comment.startsWith("--");
      if ((hash && !HASH_COMMENTS.has(lang)) || (dash && !DASH_COMMENTS.has(lang))) continue;
      kind = "comment";
    } else if (string !== undefined) kind = "string";
    else if (number !== undefined) kind = "number";
    else if (word !== undefined && KEYWORDS.has(word)) kind = "keyword";
    else if (word !== undefined && code[match.index + text.length] === "(") kind = "call";
    if (kind === null) continue;
    if (match.index > last) out.append(code.slice(last, match.index));
    out.append(el("span", `tok-${kind}`, text));
    last = match.index + text.length;
  }
  if (last < code.length) out.append(code.slice(last));
  return out;
}

export function codeBlock(code, language = "") {
  const figure = el("div", "code-block");
  if (language) figure.append(el("span", "code-lang", language));
  const pre = el("pre");
  const codeNode = el("code");
  if (language) codeNode.dataset.lang = language;
  codeNode.append(highlight(code, language));
  pre.append(codeNode);
  figure.append(pre);
  return figure;
}
