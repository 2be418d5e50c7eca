// The tenant overview: how many addresses are in each list now, and the discovery history of
// the last 30 or 90 days as charts (GET …/history; a day without a row counts 0).

import { dailyChart, dayLabel, lastDays } from "./chart.js";
import { BASE, api, boot, h, notice, query, tenantPath } from "./console.js";

// The daily counts drawn, and their colours (Okabe–Ito: told apart with colour-vision
// deficiencies too).
const DISCOVERY = [
  { key: "new_pending", label: "Pending", color: "#e69f00", dashed: true }, // on top of Discovered
  { key: "new_discovered", label: "Discovered", color: "#0072b2" },
  { key: "new_users", label: "Users", color: "#009e73" },
  { key: "new_aliases", label: "Aliases", color: "#cc79a7" },
  { key: "new_invalid", label: "Invalid", color: "#d55e00" },
];
const MESSAGES = [{ key: "messages", label: "Messages", color: "#56b4e9" }];

// The lists' totals (one row asked of each): where each number comes from and links to.
const HEADLINE = [
  { label: "Awaiting a decision", path: "discovered", params: { weeks: 52 }, page: "discovered" },
  { label: "User accounts", path: "accounts", params: { status: "user" }, page: "users?status=user" },
  { label: "Functional accounts", path: "accounts", params: { status: "functional" }, page: "users?status=functional" },
  { label: "Aliases", path: "accounts", params: { status: "alias" }, page: "users?status=alias" },
  { label: "Marked invalid", path: "invalid", params: {}, page: "invalid" },
];

const plural = (n, one, many) => `${n.toLocaleString("en")} ${n === 1 ? one : many}`;

async function headline(tenant) {
  const totals = await Promise.all(
    HEADLINE.map((card) =>
      api(tenantPath(tenant, card.path) + query({ ...card.params, per_page: 1 })).then(
        (body) => body.total,
        (error) => error,
      ),
    ),
  );
  const failed = totals.find((total) => total instanceof Error);
  document.getElementById("headline").replaceChildren(
    ...HEADLINE.map((card, i) =>
      h(
        "div",
        { class: "card" },
        h("dt", {}, card.label),
        h(
          "dd",
          {},
          totals[i] instanceof Error ? "–" : h("a", { href: `${BASE}/${card.page}` }, totals[i].toLocaleString("en")),
        ),
      ),
    ),
  );
  if (failed) notice(failed.message); // the history says the same, when it is the token's tenant
}

function summary(days, series) {
  const sums = series.map((s) => `${s.values.reduce((a, b) => a + b, 0).toLocaleString("en")} ${s.label.toLowerCase()}`);
  return `${dayLabel(days[0])} to ${dayLabel(days.at(-1))}: ${sums.join(", ")}.`;
}

function draw(days, byDay) {
  const values = (key) => days.map((day) => Number(byDay.get(day)?.[key] ?? 0));
  const discovery = DISCOVERY.map((s) => ({ ...s, values: values(s.key) }));
  const messages = MESSAGES.map((s) => ({ ...s, values: values(s.key) }));
  const range = `the last ${plural(days.length, "day", "days")}`;
  document.querySelector("#discovery .plot").replaceChildren(
    dailyChart({ title: `Addresses per day, ${range}`, summary: summary(days, discovery), days, series: discovery }),
  );
  document.querySelector("#messages .plot").replaceChildren(
    dailyChart({
      title: `Inbound messages per day, ${range}`,
      summary: summary(days, messages),
      days,
      series: messages,
      kind: "bar",
      height: 170,
    }),
  );
  // The same numbers as a table, newest day first: readable without the picture.
  const columns = [...DISCOVERY, ...MESSAGES];
  const table = document.querySelector("#numbers table");
  table.querySelector("thead tr").replaceChildren(
    h("th", {}, "Day"),
    ...columns.map((c) => h("th", { class: "number" }, c.label)),
  );
  table.querySelector("tbody").replaceChildren(
    ...[...days].reverse().map((day) =>
      h(
        "tr",
        { "data-day": day },
        h("td", {}, day),
        ...columns.map((c) => h("td", { class: "number" }, Number(byDay.get(day)?.[c.key] ?? 0).toLocaleString("en"))),
      ),
    ),
  );
}

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const range = document.getElementById("range");
  const figures = [...document.querySelectorAll("figure")];
  let latest = 0; // only the newest request's answer is drawn (the admin may toggle quickly)

  async function load() {
    const asked = ++latest;
    const count = Number(range.querySelector("input[name=days]:checked").value);
    const days = lastDays(count);
    for (const figure of figures) figure.setAttribute("aria-busy", "true");
    let rows;
    try {
      rows = await api(tenantPath(tenant, "history") + query({ days: count }));
    } catch (error) {
      if (asked === latest) notice(error.message);
      return;
    } finally {
      if (asked === latest) for (const figure of figures) figure.removeAttribute("aria-busy");
    }
    if (asked !== latest) return;
    draw(days, new Map(rows.map((row) => [row.day, row])));
  }

  range.addEventListener("change", load);
  range.addEventListener("submit", (event) => event.preventDefault());
  await Promise.all([load(), headline(tenant)]);
}
