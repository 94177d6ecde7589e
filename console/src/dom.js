// The one way the console builds DOM: elements from tag names, text only through text nodes.
// Nothing that comes from a sandbox or the API is ever parsed as HTML (no innerHTML anywhere).

/**
 * h("button", {className: "x", onclick: fn}, "text", child...) -> HTMLElement.
 * Attributes are set as properties (`className`, `type`, `value`, `disabled`, `title`, `href`,
 * event handlers `on*`) or, for `data-*` and `aria-*`, as attributes; children are nodes or
 * strings (strings become text nodes); null/undefined/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "for") {
      el.setAttribute(k, String(v));
    } else if (/html/i.test(k)) {
      // No way to parse markup through this helper, even by mistake.
      throw new Error(`h(): refusing to set ${k}`);
    } else if (k === "href") {
      el.href = safeHref(String(v));
    } else {
      el[k] = v;
    }
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, strings, arrays of them) to `el`. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Only the console's own routes and same-origin paths: never `javascript:` or another site. */
function safeHref(v) {
  if (v.startsWith("#/") || (v.startsWith("/") && !v.startsWith("//"))) return v;
  return "#/";
}

/** A short human size: 1536 -> "1.5 KiB". */
export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** Epoch ms -> local "YYYY-MM-DD HH:MM:SS". */
export function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
