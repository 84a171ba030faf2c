// The sign-in and 403 pages of the ops console: sign in through /api/auth/login (or out
// through /api/auth/logout), then load /ops again.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = document.getElementById("error");
      error.textContent = "";
      const body = JSON.stringify({
        email: document.getElementById("email").value,
        password: document.getElementById("password").value,
      });
      try {
        const response = await fetch("/api/auth/login", {
          method: "POST", headers: { "Content-Type": "application/json" }, body, credentials: "same-origin",
        });
        if (response.ok) { location.reload(); return; }
        const answer = await response.json().catch(() => ({}));
        error.textContent = (answer.error && answer.error.message) || ("sign-in failed: " + response.status);
      } catch (e) {
        error.textContent = "sign-in failed: " + e;
      }
    });
  }
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      await fetch("/api/auth/logout", { method: "POST", credentials: "same-origin" });
      location.reload();
    });
  }
});
