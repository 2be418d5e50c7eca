// The weekly reports: preview one as the mail shows it (the API's format=html, the very HTML the
// jobs send), or download its rows (CSV or JSON).
//
// The preview frame is sandboxed without scripts. Its document inherits this page's
// Content-Security-Policy, which refuses style attributes, so the report is not written into it
// as markup: it is parsed inertly (DOMParser runs nothing and loads nothing) and rebuilt element
// by element from a fixed list of tags and attributes, its text as text nodes and each inline
// style applied through the CSSOM, which the policy allows. Nothing else of it is kept.

import { api, boot, h, notice, query, tenantPath } from "./console.js";

const TAGS = new Set([
  "table", "thead", "tbody", "tr", "th", "td", "div", "p", "h1", "h2", "h3", "span", "strong",
  "em", "b", "a", "br",
]);
const ATTRIBUTES = new Set([
  "width", "align", "valign", "bgcolor", "border", "cellpadding", "cellspacing", "colspan",
  "rowspan", "role", "lang", "title",
]);

// Style attributes renamed before parsing, so that parsing applies (and reports) none of them.
// The API escapes every quote in text and attribute values, so ` style="` only starts one.
const STYLE = /\sstyle="/g;

function rebuild(node, doc) {
  if (node.nodeType === Node.TEXT_NODE) return doc.createTextNode(node.data);
  if (node.nodeType !== Node.ELEMENT_NODE || !TAGS.has(node.localName)) return null;
  const element = doc.createElement(node.localName);
  for (const { name, value } of node.attributes) {
    if (ATTRIBUTES.has(name) || (name.startsWith("data-") && name !== "data-style")) {
      element.setAttribute(name, value);
    }
  }
  element.style.cssText = node.getAttribute("data-style") ?? "";
  if (node.localName === "a") {
    const href = node.getAttribute("href") ?? "";
    if (/^https?:\/\//i.test(href)) {
      element.setAttribute("href", href);
      element.setAttribute("target", "_blank"); // out of the frame, into a tab of its own
      element.setAttribute("rel", "noopener noreferrer");
    }
  }
  for (const child of node.childNodes) {
    const copy = rebuild(child, doc);
    if (copy) element.append(copy);
  }
  return element;
}

async function frameDocument(frame) {
  const ready = () => frame.contentDocument?.URL === "about:srcdoc" && frame.contentDocument.readyState === "complete";
  if (!ready()) await new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
  return frame.contentDocument;
}

async function show(frame, markup) {
  const parsed = new DOMParser().parseFromString(markup.replace(STYLE, ' data-style="'), "text/html");
  const doc = await frameDocument(frame);
  doc.title = parsed.title;
  doc.body.style.cssText = parsed.body.getAttribute("data-style") ?? "";
  doc.body.replaceChildren(...[...parsed.body.childNodes].map((n) => rebuild(n, doc)).filter(Boolean));
  frame.style.height = `${doc.documentElement.scrollHeight + 2}px`;
}

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const kind = document.getElementById("kind");
  const week = document.getElementById("week");
  const frame = document.getElementById("preview-frame");
  const path = (format) =>
    tenantPath(tenant, "reports", kind.value) + query({ format, week: week.value.trim() });

  // Only the newest request's answer is shown: the preview asked for when the page loads may
  // answer after the one the admin asked for since, and must not replace it.
  let latest = 0;

  async function preview() {
    const asked = ++latest;
    let markup;
    try {
      markup = await (await api(path("html"), { raw: true })).text();
    } catch (error) {
      if (asked === latest) notice(error.message);
      return;
    }
    if (asked !== latest) return;
    notice("");
    const section = document.getElementById("preview");
    section.hidden = false;
    document.getElementById("preview-title").textContent =
      `${kind.options[kind.selectedIndex].text}, as the mail shows it`;
    await show(frame, markup);
  }

  // A plain link cannot carry the token header: fetch, then save the body from memory.
  async function download(format) {
    let response;
    try {
      response = await api(path(format), { raw: true });
    } catch (error) {
      notice(error.message);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `${tenant}-${kind.value}-${week.value.trim() || "latest"}.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  document.getElementById("report").addEventListener("submit", (event) => {
    event.preventDefault();
    preview();
  });
  document.getElementById("csv").addEventListener("click", () => download("csv"));
  document.getElementById("json").addEventListener("click", () => download("json"));
  await preview();
}
