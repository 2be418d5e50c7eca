// Sign in: the token is checked against the API before it is kept in this tab's sessionStorage.

import { BASE, api, notice, session } from "./console.js";

if (new URLSearchParams(location.search).get("reason") === "expired") {
  notice("Your token is no longer accepted; sign in again.");
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  const token = input.value.trim();
  try {
    await api("/tenants", { token });
  } catch (error) {
    notice(error.status === 401 ? "That token is not accepted." : error.message);
    return;
  }
  session.signOut(); // forget the previous token's tenant choice
  session.signIn(token);
  input.value = "";
  location.assign(`${BASE}/discovered`);
});
