// The Users list: the tenant's user accounts, functional accounts and aliases; pick some and
// delete them (after a confirmation), one DELETE command each, whose results are awaited.

import { AddressTable, follow } from "./actions.js";
import { api, boot, h, notice, query, tenantPath, when } from "./console.js";

const TYPE = { user: "User", functional: "Functional", alias: "Alias" };
const ROLE = { end_user: "End user", silent_user: "Silent user" };
const LISTED = 10; // addresses named in the confirmation; the rest are counted

const status = document.getElementById("status");
const asked = new URLSearchParams(location.search).get("status");
if (asked && Object.hasOwn(TYPE, asked)) status.value = asked;

function linked(item) {
  if (item.status === "alias") return `alias of ${item.primary ?? "?"}`;
  if (!item.aliases?.length) return "";
  return `${item.aliases.length} alias${item.aliases.length > 1 ? "es" : ""}: ${item.aliases.join(", ")}`;
}

// The in-page confirmation (a modal <dialog>): resolves true only for "Delete".
function confirmDelete(items) {
  const dialog = document.getElementById("confirm");
  const one = items.length === 1;
  document.getElementById("confirm-title").textContent = one
    ? `Delete ${items[0].address}?`
    : `Delete these ${items.length} accounts?`;
  const blocked = items.filter((item) => item.aliases?.length).length;
  const refusal = one
    ? " It still has aliases: its deletion will be refused until they are deleted."
    : ` ${blocked} of them still ha${blocked > 1 ? "ve" : "s"} aliases: their deletion will be refused.`;
  document.getElementById("confirm-text").textContent =
    `${one ? "It is" : "They are"} forgotten: mail to ${one ? "it" : "them"} is handled like mail ` +
    `to an unknown address again.${blocked ? refusal : ""}`;
  const names = items.slice(0, LISTED).map((item) =>
    h("li", {}, h("code", {}, item.address), ` (${TYPE[item.status] ?? item.status})`),
  );
  if (items.length > LISTED) names.push(h("li", {}, `and ${items.length - LISTED} more`));
  document.getElementById("confirm-list").replaceChildren(...(one ? [] : names));
  return new Promise((resolve) => {
    const yes = document.getElementById("confirm-delete");
    const no = document.getElementById("confirm-cancel");
    const answer = (value) => () => {
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("close", onNo);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onYes = answer(true);
    const onNo = answer(false);
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("close", onNo); // Escape
    dialog.showModal();
  });
}

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const table = new AddressTable({
    load: (page, perPage) =>
      api(
        tenantPath(tenant, "accounts") +
          query({ q: document.getElementById("q").value.trim(), status: status.value, page, per_page: perPage }),
      ),
    cells: (item) => [
      h("td", { class: "address" }, item.address),
      h("td", { "data-status": item.status }, TYPE[item.status] ?? item.status),
      h("td", {}, [item.first_name, item.surname].filter(Boolean).join(" ")),
      h("td", {}, ROLE[item.role] ?? item.role ?? ""),
      h("td", { class: "linked" }, linked(item)),
      h("td", {}, when(item.since)),
    ],
  });

  document.getElementById("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    table.go(1);
  });
  status.addEventListener("change", () => table.go(1));

  // One DELETE per address (the API has no batch for it), then the same wait as the other
  // lists: the results, then the rows gone (the list is read from ClickHouse, a moment behind).
  async function remove(items) {
    const sent = await Promise.all(
      items.map(async (item) => {
        try {
          const answer = await api(tenantPath(tenant, "users", item.address), { method: "DELETE" });
          return { address: item.address, command_id: answer.command_id };
        } catch (error) {
          return { address: item.address, error: error.message };
        }
      }),
    );
    const refused = sent.filter((s) => s.error);
    const commands = sent.filter((s) => !s.error);
    if (commands.length === 0) {
      notice(refused.map((s) => `${s.address}: ${s.error}`).join("; "));
      return;
    }
    await follow(tenant, table, commands, { refused, verb: "delete ", done: "deleted", failed: "refused" });
  }

  document.getElementById("apply").addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = table.chosen();
    if (chosen.length === 0) return notice("Select at least one account first.");
    const button = document.getElementById("apply-button");
    button.disabled = true;
    try {
      if (await confirmDelete(chosen)) await remove(chosen);
    } finally {
      button.disabled = false;
    }
  });

  await table.refresh();
}
