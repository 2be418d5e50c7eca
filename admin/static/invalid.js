// The Marked Invalid list: pick addresses and remove them from it.

import { AddressTable, runAction } from "./actions.js";
import { api, boot, h, notice, query, tenantPath, when } from "./console.js";

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const table = new AddressTable({
    load: (page, perPage) =>
      api(
        tenantPath(tenant, "invalid") +
          query({ q: document.getElementById("q").value.trim(), page, per_page: perPage }),
      ),
    cells: (item) => [
      h("td", { class: "address" }, item.address),
      h("td", {}, when(item.since)),
      h("td", {}, item.reason ?? ""),
    ],
  });

  document.getElementById("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    table.go(1);
  });

  document.getElementById("apply").addEventListener("submit", async (event) => {
    event.preventDefault();
    const addresses = table.chosen().map((item) => item.address);
    if (addresses.length === 0) return notice("Select at least one address first.");
    const button = document.getElementById("apply-button");
    button.disabled = true;
    try {
      await runAction(tenant, table, { action: "remove_invalid", addresses });
    } finally {
      button.disabled = false;
    }
  });

  await table.refresh();
}
