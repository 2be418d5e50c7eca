// What the Discovered and Marked Invalid pages share: a paged table of addresses with
// checkboxes, and an action that becomes commands whose results are awaited and then shown.

import { api, h, notice, settle, sleep, tenantPath } from "./console.js";

const PER_PAGE = 50;

// A table whose rows are addresses. `load(page)` returns {items, total}; `cells(item)` returns
// the row's cells after the checkbox. Selection is kept by address across refreshes.
export class AddressTable {
  constructor({ load, cells }) {
    this.load = load;
    this.cells = cells;
    this.page = 1;
    this.items = [];
    this.selected = new Set();
    this.body = document.querySelector("#list tbody");
    this.all = document.getElementById("all");
    this.all.addEventListener("change", () => {
      for (const item of this.items) this.toggle(item.address, this.all.checked);
      this.render();
    });
    document.getElementById("prev").addEventListener("click", () => this.go(this.page - 1));
    document.getElementById("next").addEventListener("click", () => this.go(this.page + 1));
  }

  toggle(address, on) {
    if (on) this.selected.add(address);
    else this.selected.delete(address);
  }

  async go(page) {
    this.page = Math.max(1, page);
    return this.refresh();
  }

  // Reload the page of rows; returns the items, or null when the API refused (shown as notice).
  // Only the newest reload is shown: an answer that arrives after a later one was asked for (a
  // search typed while a filter's reload was on its way) would put back rows the admin no longer
  // sees, and a checkbox ticked on the screen would select another address.
  async refresh() {
    const asked = (this.asked = (this.asked ?? 0) + 1);
    let result;
    try {
      result = await this.load(this.page, PER_PAGE);
    } catch (error) {
      if (asked !== this.asked) return this.items;
      this.items = [];
      this.render();
      notice(error.message);
      return null;
    }
    if (asked !== this.asked) return this.items; // superseded: the newer answer is shown
    this.items = result.items;
    const present = new Set(this.items.map((i) => i.address));
    for (const address of [...this.selected]) if (!present.has(address)) this.selected.delete(address);
    this.total = result.total;
    this.render();
    return this.items;
  }

  render() {
    this.body.replaceChildren(
      ...this.items.map((item) =>
        h(
          "tr",
          { "data-address": item.address },
          h(
            "td",
            {},
            h("input", {
              type: "checkbox",
              "aria-label": `Select ${item.address}`,
              checked: this.selected.has(item.address),
              onchange: (event) => {
                this.toggle(item.address, event.target.checked);
                this.all.checked = this.items.length > 0 && this.selected.size === this.items.length;
              },
            }),
          ),
          ...this.cells(item),
        ),
      ),
    );
    if (this.items.length === 0) {
      this.body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "Nothing to show.")));
    }
    this.all.checked = this.items.length > 0 && this.selected.size === this.items.length;
    const first = (this.page - 1) * PER_PAGE;
    document.getElementById("count").textContent = this.total
      ? `${first + 1}–${first + this.items.length} of ${this.total}`
      : "";
    document.getElementById("prev").disabled = this.page <= 1;
    document.getElementById("next").disabled = first + this.items.length >= (this.total ?? 0);
  }

  chosen() {
    return this.items.filter((item) => this.selected.has(item.address));
  }
}

// The commands' states as a list (``verb``: what the command does, e.g. "delete ", if the list
// does not say it already).
export function showCommands(states, verb = "") {
  const section = document.getElementById("commands");
  section.hidden = false;
  section.querySelector("ul").replaceChildren(
    ...states.map((s) =>
      h(
        "li",
        { "data-command-id": s.command_id, "data-status": s.status, class: s.status },
        h("code", {}, s.command_id),
        ` ${verb}${s.address}: ${s.status}`,
        s.message && s.status !== "applied" ? ` (${s.message})` : "",
      ),
    ),
  );
}

// Follow sent commands to applied/rejected, then refresh the table until the applied addresses
// have left it (the lists are read from ClickHouse, a moment behind the topics). ``refused``:
// addresses the API refused before any command was sent, counted with the rejected.
export async function follow(tenant, table, commands, options = {}) {
  const { refused = [], verb = "", done = "applied", failed = "rejected" } = options;
  notice(`${commands.length} command(s) sent; waiting for the results…`, "info");
  const states = await settle(tenant, commands, (current) => showCommands(current, verb));
  const applied = new Set(states.filter((s) => s.status === "applied").map((s) => s.address.toLowerCase()));
  const rejected = states.filter((s) => s.status === "rejected").length + refused.length;
  const pending = states.filter((s) => s.status === "pending").length;
  notice(
    `${applied.size} ${done}, ${rejected} ${failed}${pending ? `, ${pending} still pending` : ""}.` +
      (refused.length ? ` ${refused.map((s) => `${s.address}: ${s.error}`).join("; ")}` : ""),
    rejected || pending ? "error" : "info",
  );
  const deadline = Date.now() + 30000;
  for (;;) {
    const items = await table.refresh();
    const lagging = (items ?? []).some((item) => applied.has(item.address.toLowerCase()));
    if (!lagging || Date.now() > deadline) return;
    await sleep(700);
  }
}

// Publish the action, then follow its commands.
export async function runAction(tenant, table, body) {
  let answer;
  try {
    answer = await api(tenantPath(tenant, "actions"), { method: "POST", body });
  } catch (error) {
    notice(error.message);
    return;
  }
  await follow(tenant, table, answer.commands);
}
