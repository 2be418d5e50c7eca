// The Discovered list: pick addresses, choose an action (or an alias's user), apply.

import { AddressTable, runAction } from "./actions.js";
import { api, boot, h, notice, query, sleep, tenantPath, when } from "./console.js";

const HOW = {
  threshold: "inbound mail",
  outbound: "outbound mail",
  alias_detected: "possible alias",
};

const form = document.getElementById("apply");
const action = document.getElementById("action");
const alias = document.getElementById("alias");
const listTable = document.getElementById("list");
const weeks = document.getElementById("weeks");
// A link may ask for a span (the warning report asks for every address still waiting): offered
// as a choice if the list lacks it.
const askedWeeks = Number.parseInt(new URLSearchParams(location.search).get("weeks") ?? "", 10);
if (askedWeeks >= 1 && askedWeeks <= 52) {
  if (![...weeks.options].some((o) => Number(o.value) === askedWeeks)) {
    weeks.append(h("option", { value: String(askedWeeks) }, `${askedWeeks} weeks`));
  }
  weeks.value = String(askedWeeks);
}
const names = new Map(); // address -> {first_name, surname}, kept while the page lives

function nameInput(address, field, label) {
  return h("input", {
    class: "name",
    "data-field": field,
    "aria-label": `${label} of ${address}`,
    placeholder: label,
    maxlength: 100,
    value: names.get(address)?.[field] ?? "",
    oninput: (event) => {
      names.set(address, { ...names.get(address), [field]: event.target.value });
    },
  });
}

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const table = new AddressTable({
    load: (page, perPage) =>
      api(
        tenantPath(tenant, "discovered") +
          query({
            q: document.getElementById("q").value.trim(),
            weeks: weeks.value,
            page,
            per_page: perPage,
          }),
      ),
    cells: (item) => [
      h("td", { class: "address" }, item.address),
      h(
        "td",
        { class: "names" },
        nameInput(item.address, "first_name", "First name"),
        nameInput(item.address, "surname", "Surname"),
      ),
      h("td", {}, when(item.discovered_at)),
      h("td", {}, HOW[item.discovered_how] ?? item.discovered_how ?? ""),
      h("td", { class: "number" }, item.messages),
      h("td", { class: "number" }, item.notices_left ?? ""),
    ],
  });

  action.addEventListener("change", () => {
    listTable.classList.toggle("naming", action.value === "create_user");
  });

  // Typeahead for "Or Add as Alias": the tenant's users by address or name.
  let typed = 0;
  alias.addEventListener("input", async () => {
    const mine = ++typed;
    await sleep(200);
    if (mine !== typed || !alias.value.trim()) return;
    try {
      const users = await api(tenantPath(tenant, "users") + query({ q: alias.value.trim(), limit: 10 }));
      if (mine !== typed) return;
      document.getElementById("primaries").replaceChildren(
        ...users.map((u) =>
          h("option", { value: u.address }, [u.first_name, u.surname].filter(Boolean).join(" ") || u.status),
        ),
      );
    } catch (error) {
      notice(error.message);
    }
  });

  document.getElementById("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    table.go(1);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = table.chosen();
    const primary = alias.value.trim();
    if (chosen.length === 0) return notice("Select at least one address first.");
    if (!action.value && !primary) return notice("Choose an action, or a user to add the addresses to as aliases.");
    if (action.value && primary) return notice("Choose an action or an alias, not both.");
    const addresses = chosen.map((item) => item.address);
    const body = primary
      ? { action: "add_alias", addresses, primary }
      : { action: action.value, addresses };
    if (action.value === "create_user") {
      body.users = addresses.map((address) => ({
        address,
        first_name: (names.get(address)?.first_name ?? "").trim(),
        surname: (names.get(address)?.surname ?? "").trim(),
      }));
    }
    const button = document.getElementById("apply-button");
    button.disabled = true;
    try {
      await runAction(tenant, table, body);
    } finally {
      button.disabled = false;
    }
    alias.value = "";
  });

  await table.refresh();
}
