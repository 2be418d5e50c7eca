// The tenant's discovery settings: each with its value, whether it is the tenant's own, and the
// recommended value. Saving sends only what changed (PATCH); "Use default" sends null. The save
// is made on the version the form shows (If-Match): if someone saved in between, nothing is
// written, the form shows their version, and the admin decides again.

import { BASE, api, boot, h, notice, tenantPath } from "./console.js";

const label = (name) => name.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
const shown = (value) => (value === true ? "on" : value === false ? "off" : value == null ? "" : String(value));

function resolve(schema, property) {
  const ref = property.$ref ?? property.allOf?.[0]?.$ref;
  return ref ? { ...schema.$defs[ref.split("/").pop()], ...property } : property;
}

function control(name, spec, value) {
  const common = { name, "data-setting": name, "aria-label": label(name) };
  if (spec.type === "boolean") return h("input", { ...common, type: "checkbox", checked: value });
  if (spec.enum) {
    const select = h("select", common, ...spec.enum.map((v) => h("option", { value: v }, v)));
    select.value = value;
    return select;
  }
  if (spec.type === "integer" || spec.type === "number") {
    return h("input", {
      ...common,
      type: "number",
      value: String(value),
      min: spec.minimum ?? spec.exclusiveMinimum,
      max: spec.maximum ?? spec.exclusiveMaximum,
      step: spec.type === "integer" ? 1 : "any",
      required: true,
    });
  }
  return h("input", { ...common, type: "text", value: value ?? "", maxlength: spec.maxLength });
}

function read(input, spec) {
  if (spec.type === "boolean") return input.checked;
  if (spec.type === "integer" || spec.type === "number") return Number(input.value);
  return input.value;
}

const context = await boot();
if (context?.tenant) {
  const { tenant } = context;
  const form = document.getElementById("settings");
  const body = form.querySelector("tbody");
  let schema;
  let view;
  let etag;

  async function load() {
    const response = await api(tenantPath(tenant, "settings"), { raw: true });
    etag = response.headers.get("ETag");
    view = await response.json();
  }

  function render() {
    body.replaceChildren(
      ...Object.entries(view).map(([name, setting]) => {
        const spec = resolve(schema, schema.properties[name] ?? {});
        const recommended = setting.recommended;
        const differs = recommended != null && recommended !== setting.value;
        return h(
          "tr",
          { "data-row": name, class: differs ? "differs" : null },
          h("td", {}, h("strong", {}, label(name)), h("div", { class: "help" }, setting.description ?? "")),
          h("td", {}, control(name, spec, setting.value)),
          h("td", {}, recommended == null ? "no recommendation" : shown(recommended)),
          h(
            "td",
            {},
            h("input", {
              type: "checkbox",
              "data-default": name,
              "aria-label": `Use the provider's default for ${label(name)}`,
              checked: !setting.overridden,
              disabled: !setting.overridden,
            }),
          ),
        );
      }),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = {};
    for (const [name, setting] of Object.entries(view)) {
      const spec = resolve(schema, schema.properties[name] ?? {});
      const reset = form.querySelector(`[data-default="${CSS.escape(name)}"]`);
      const value = read(form.querySelector(`[data-setting="${CSS.escape(name)}"]`), spec);
      if (setting.overridden && reset.checked) changes[name] = null;
      else if (value !== setting.value) changes[name] = value;
    }
    if (Object.keys(changes).length === 0) return notice("Nothing changed.", "info");
    try {
      const response = await api(tenantPath(tenant, "settings"), {
        method: "PATCH", body: changes, ifMatch: etag, raw: true,
      });
      etag = response.headers.get("ETag");
      view = await response.json();
    } catch (error) {
      if (error.status !== 412) return notice(error.message);
      try {
        await load();
      } catch (reload) {
        return notice(reload.message);
      }
      render();
      return notice(
        "Someone saved these settings while you were editing them; nothing of yours was saved. " +
          "The form now shows their version: make your change again.",
      );
    }
    render();
    notice(`Saved: ${Object.keys(changes).map(label).join(", ")}.`, "info");
  });

  try {
    const [, response] = await Promise.all([
      load(),
      fetch(`${BASE}/schema/settings`, { cache: "no-store" }),
    ]);
    schema = await response.json();
    render();
  } catch (error) {
    notice(error.message);
  }
}
