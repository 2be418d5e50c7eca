// The weekly reports: preview one (JSON) as a table, or download it (CSV or JSON).

import { api, boot, h, notice, query, tenantPath } from "./console.js";

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const kind = document.getElementById("kind");
  const week = document.getElementById("week");
  const path = (format) =>
    tenantPath(tenant, "reports", kind.value) + query({ format, week: week.value.trim() });

  // Only the newest request's answer is shown: the preview asked for when the page loads may
  // answer after the one the admin asked for since, and must not replace it.
  let latest = 0;

  async function preview() {
    const asked = ++latest;
    let report;
    try {
      report = await api(path("json"));
    } catch (error) {
      if (asked === latest) notice(error.message);
      return;
    }
    if (asked !== latest) return;
    notice("");
    const section = document.getElementById("preview");
    section.hidden = false;
    const title = kind.options[kind.selectedIndex].text;
    document.getElementById("preview-title").textContent =
      `${title}, week ${report.week}: ${report.rows.length} row(s)`;
    document.getElementById("notes").replaceChildren(...report.notes.map((n) => h("li", {}, n)));
    const columns = report.rows.length ? Object.keys(report.rows[0]) : [];
    section.querySelector("thead tr").replaceChildren(...columns.map((c) => h("th", {}, c)));
    section.querySelector("tbody").replaceChildren(
      ...report.rows.map((row) => h("tr", {}, ...columns.map((c) => h("td", {}, row[c] ?? "")))),
    );
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
