// Herald's admin page: times in the browser's time zone (UTC on hover), and a refresh of
// the page's content every few seconds that keeps the address (so the filter) as it is.
// No framework, nothing from a CDN; the page works without this script.
"use strict";

(function () {
  const pad = (n) => String(n).padStart(2, "0");

  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      const utc = when.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
      el.title = utc;
      el.textContent =
        `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ` +
        `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
    });
  }

  function busy() {
    // Never swap the content under someone typing, choosing or reading an open filter.
    const active = document.activeElement;
    if (active && active.closest("form") && active.tagName !== "BUTTON") return true;
    return document.hidden;
  }

  async function refresh(main) {
    if (busy()) return;
    let response;
    try {
      response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Herald-Refresh": "1" },
      });
    } catch (e) {
      return; // offline for a moment: try again next time
    }
    if (response.redirected || !response.ok) {
      if (response.redirected) window.location.reload(); // signed out meanwhile
      return;
    }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("main");
    if (!fresh || busy()) return;
    const open = main.querySelector("details.filters")?.open;
    main.querySelector(".flash")?.remove();
    fresh.querySelector(".flash")?.remove();
    main.innerHTML = fresh.innerHTML;
    const details = main.querySelector("details.filters");
    if (details && open !== undefined) details.open = open;
    localise(main);
  }

  // The filter form leaves its empty fields out of the address (the server would redirect).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.method !== "get") return;
    form.querySelectorAll("input, select").forEach((el) => {
      if (!el.value) el.disabled = true;
    });
  });

  document.addEventListener("DOMContentLoaded", () => {
    localise(document);
    const main = document.getElementById("main");
    const seconds = Number(main?.dataset.refresh || 0);
    if (seconds > 0) window.setInterval(() => refresh(main), seconds * 1000);
  });
})();
