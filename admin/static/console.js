// Shared by every console page: the session, calls to the /v1 API, safe DOM building and the
// wait for commands. Data is only ever put into the page as text (textContent / text nodes),
// never parsed as HTML, so an address like "<img onerror=…>"@x shows as the characters it is.

const { api: API, base: BASE } = document.body.dataset;
export { BASE };

const TOKEN = "smtp-discovery.token";
const TENANT = "smtp-discovery.tenant";

// sessionStorage: the token lives as long as this tab, is never sent in a URL and never logged.
export const session = {
  token: () => sessionStorage.getItem(TOKEN),
  signIn: (token) => sessionStorage.setItem(TOKEN, token),
  signOut: () => {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(TENANT);
  },
  tenant: () => sessionStorage.getItem(TENANT),
  chooseTenant: (id) => sessionStorage.setItem(TENANT, id),
};

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One call to the API with the session's token. The API's error body is {error: {code, message}}.
// ifMatch: the ETag of what the user edited, so that a write over someone else's is refused (412).
export async function api(path, { method = "GET", body, raw = false, token, ifMatch } = {}) {
  const headers = { Authorization: `Bearer ${token ?? session.token() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (ifMatch) headers["If-Match"] = ifMatch;
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) {
    let code = "http_error";
    let message = `the server answered ${response.status}`;
    try {
      ({ code, message } = (await response.json()).error);
    } catch {
      // not the API's error body: keep the status sentence
    }
    throw new ApiFailure(response.status, code, message);
  }
  return raw ? response : response.json();
}

// "/tenants/<t>/<part>…" with every part URL-encoded (tenant ids and addresses are data).
export function tenantPath(tenant, ...parts) {
  return "/" + ["tenants", tenant, ...parts].map(encodeURIComponent).join("/");
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value != null) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const PROPERTIES = new Set(["checked", "value", "disabled", "hidden", "indeterminate"]);

// h("td", {class: "x"}, "text", child): strings become text nodes, never markup.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) element[key] = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function notice(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = kind;
  box.hidden = !message;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function when(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().slice(0, 16).replace("T", " ");
}

function toLogin(reason) {
  session.signOut();
  location.assign(`${BASE}/${reason ? query({ reason }) : ""}`);
}

// Every page but the login: a token, the tenant to show, and a picker that searches the tenants
// this token may see (the API pages them: a provider with 10,000 tenants gets the first few and a
// search box, never a select of 10,000). The tenant asked for (?tenant= or the tab's last choice)
// is used as asked: the API decides what this token may read, and a refusal is shown as it is,
// with nothing of the other tenant.
const PICKER_SIZE = 50;

function tenantsMatching(text) {
  return api(`/tenants${query({ q: text, per_page: PICKER_SIZE })}`).then((body) => body.items);
}

export async function boot() {
  if (!session.token()) {
    toLogin("");
    return null;
  }
  document.getElementById("sign-out").addEventListener("click", () => toLogin(""));
  let first;
  try {
    first = await tenantsMatching("");
  } catch (error) {
    if (error.status === 401) toLogin("expired");
    else notice(error.message);
    return null;
  }
  const asked = new URLSearchParams(location.search).get("tenant");
  let tenant = asked ?? session.tenant();
  let known = first;
  if (tenant && !first.some((t) => t.tenant_id === tenant)) {
    // Beyond the first page, or not this token's: ask for that one tenant.
    const one = await api(tenantPath(tenant)).catch(() => null);
    if (one) known = [...first, one];
  }
  const visible = new Set(known.map((t) => t.tenant_id));
  if (!tenant || (!asked && !visible.has(tenant))) tenant = first[0]?.tenant_id ?? null;
  if (tenant && visible.has(tenant)) session.chooseTenant(tenant);
  const picker = document.getElementById("tenant");
  const show = (tenants) => {
    const options = tenants.map((t) => h("option", { value: t.tenant_id }, `${t.name} (${t.tenant_id})`));
    if (tenant && !tenants.some((t) => t.tenant_id === tenant)) {
      const current = known.find((t) => t.tenant_id === tenant);
      options.push(h("option", { value: tenant }, current ? `${current.name} (${tenant})` : tenant));
    }
    picker.replaceChildren(...options);
    picker.value = tenant ?? "";
  };
  show(first);
  picker.addEventListener("change", () => {
    session.chooseTenant(picker.value);
    location.assign(location.pathname);
  });
  const search = document.getElementById("tenant-search");
  let typed = 0;
  search.addEventListener("input", () => {
    const mine = ++typed;
    setTimeout(async () => {
      if (mine !== typed) return; // still typing
      try {
        const found = await tenantsMatching(search.value);
        if (mine === typed) show(found);
      } catch (error) {
        notice(error.message);
      }
    }, 250);
  });
  if (!tenant) notice("This token sees no tenant yet.", "info");
  return { tenant };
}

// Wait for commands to be applied or rejected, reporting every change. Commands still pending
// at the deadline are left pending (the streams workers may be behind); the list says so.
export async function settle(tenant, commands, onChange, { timeoutMs = 60000, intervalMs = 400 } = {}) {
  const states = commands.map((c) => ({ ...c, status: "pending", message: "" }));
  const deadline = Date.now() + timeoutMs;
  onChange(states);
  while (states.some((s) => s.status === "pending") && Date.now() < deadline) {
    await sleep(intervalMs);
    const pending = states.filter((s) => s.status === "pending").slice(0, 25);
    await Promise.all(
      pending.map(async (state) => {
        try {
          const result = await api(tenantPath(tenant, "commands", state.command_id));
          state.status = result.status;
          state.message = result.message ?? "";
        } catch (error) {
          state.message = error.message;
        }
      }),
    );
    onChange(states);
  }
  return states;
}
