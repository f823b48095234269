// The dashboard: reads /api/v1 (status, stats/hourly, reports) every REFRESH ms and shows it.
// Every text from the ledger goes in with textContent, never as markup: supplier names and
// reasons come from the invoices people drop in.
"use strict";

const REFRESH = 15000;
const API = "api/v1/";
const TOKEN_KEY = "facturasd-token";
const LANG_KEY = "facturasd-lang";
const SVG = "http://www.w3.org/2000/svg";
const WORDS = JSON.parse(document.getElementById("words").textContent);

let lang = chooseLanguage();

function chooseLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  const kept = localStorage.getItem(LANG_KEY);
  return [asked, kept].find((l) => l in WORDS) || "es";
}

function word(key, values = {}) {
  const text = WORDS[lang][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

function stateWord(state) {
  return WORDS[lang].states[state] ?? state;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function fill(node, children) {
  node.replaceChildren(...children);
}

async function get(path) {
  const headers = {};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(API + path, { headers, cache: "no-store" });
  if (response.status === 401) throw new NeedsToken();
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response;
}

class NeedsToken extends Error {}

async function refresh() {
  try {
    const query = "lang=" + lang;
    const [status, hourly, reports] = await Promise.all([
      get("status?" + query).then((r) => r.json()),
      get("stats/hourly").then((r) => r.json()),
      get("reports").then((r) => r.json()),
    ]);
    show(status, hourly, reports.reports);
    document.getElementById("offline").hidden = true;
    document.getElementById("token").hidden = true;
    document.getElementById("main").hidden = false;
  } catch (error) {
    if (error instanceof NeedsToken) {
      document.getElementById("token").hidden = false;
    } else {
      document.getElementById("offline").hidden = false;
    }
  }
}

function show(status, hourly, reports) {
  const health = status.health;
  const badge = document.getElementById("health");
  badge.className = "badge " + health.status;
  badge.textContent =
    word("health") + ": " + word(health.status) +
    (health.score === null ? "" : " (" + Math.round(health.score * 100) + " %)");
  document.getElementById("sandbox").hidden = !health.sandbox;
  document.getElementById("updated").textContent = word("updated", {
    at: status.generated_at.slice(11, 19),
  });

  document.getElementById("today-title").textContent = word("today", { n: status.today.total });
  counts(document.getElementById("by-state"), status.today.by_state);
  counts(document.getElementById("by-compliance"), status.today.by_compliance);
  chart(hourly.hours, Object.keys(status.today.by_state));
  person(status.needs_person);
  failing(health.failing);
  alerts(status.alerts_open);
  queues(status.queues);
  reportLinks(reports, status.generated_at.slice(0, 10));
  cache(status.cache);
}

function counts(table, found) {
  fill(
    table,
    Object.entries(found).map(([key, n]) => {
      const row = el("tr", undefined, n ? "" : "none");
      row.dataset.key = key;
      row.append(el("td", stateWord(key)), el("td", String(n)));
      return row;
    }),
  );
}

function chart(hours, states) {
  const svg = document.getElementById("chart");
  const width = 960, height = 220, bottom = 20, top = 14;
  const most = Math.max(1, ...hours.map((h) => h.total));
  const step = width / hours.length;
  const nodes = [];
  hours.forEach((hour, i) => {
    let y = height - bottom;
    for (const state of states) {
      const n = hour.by_state[state] || 0;
      if (!n) continue;
      const tall = (n / most) * (height - bottom - top);
      y -= tall;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("class", "s-" + state);
      bar.setAttribute("x", String(i * step + 2));
      bar.setAttribute("y", String(y));
      bar.setAttribute("width", String(step - 4));
      bar.setAttribute("height", String(tall));
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = hour.hour.slice(11, 16) + " · " + stateWord(state) + ": " + n;
      bar.append(tip);
      nodes.push(bar);
    }
    if (hour.total) {
      nodes.push(svgText(i * step + step / 2, y - 3, String(hour.total)));
    }
    if (i % 3 === 0) {
      nodes.push(svgText(i * step + step / 2, height - 5, hour.hour.slice(11, 16)));
    }
  });
  fill(svg, nodes);
  svg.setAttribute("aria-label", word("per_hour"));
  const legend = document.getElementById("legend");
  fill(
    legend,
    states.map((state) => {
      const item = el("li");
      item.append(el("i", undefined, "s-" + state), stateWord(state));
      return item;
    }),
  );
}

function svgText(x, y, text) {
  const node = document.createElementNS(SVG, "text");
  node.setAttribute("x", String(x));
  node.setAttribute("y", String(y));
  node.setAttribute("text-anchor", "middle");
  node.textContent = text;
  return node;
}

function person(needs) {
  document.getElementById("person-title").textContent = word("person", { n: needs.count });
  const body = document.querySelector("#person-list tbody");
  fill(
    body,
    needs.first.map((item) => {
      const row = el("tr");
      row.dataset.id = String(item.id);
      row.append(
        el("td", item.invoice),
        el("td", stateWord(item.state)),
        el("td", item.reason),
        el("td", item.todo),
      );
      return row;
    }),
  );
  document.getElementById("person-list").hidden = needs.first.length === 0;
  const more = needs.count - needs.first.length;
  document.getElementById("person-more").textContent =
    needs.count === 0 ? word("nobody") : more > 0 ? word("more", { more }) : "";
}

function failing(checks) {
  document.getElementById("failing-section").hidden = checks.length === 0;
  fill(
    document.getElementById("failing"),
    checks.map((c) => {
      const item = el("li");
      const where = c.component ? c.check + " (" + c.component + ")" : c.check;
      item.append(el("strong", where + ": "), c.output || word(c.status));
      return item;
    }),
  );
}

function alerts(open) {
  document.getElementById("alerts-title").textContent = word("alerts", { n: open.length });
  fill(
    document.getElementById("alerts"),
    open.map((a) => {
      const item = el("li");
      item.append(el("span", word(a.severity) + " ", "severity-" + a.severity), a.subject);
      return item;
    }),
  );
}

function queues(found) {
  fill(
    document.querySelector("#queues tbody"),
    Object.entries(found).map(([name, q]) => {
      const row = el("tr");
      for (const value of [name, q.depth, q.ready, q.oldest_age_seconds, q.dead]) {
        row.append(el("td", String(value)));
      }
      return row;
    }),
  );
}

function reportLinks(reports, today) {
  const shown = reports.slice(0, 7);
  const list = document.getElementById("reports");
  if (shown.length === 0) {
    fill(list, [el("li", word("no_reports"), "muted")]);
    return;
  }
  fill(
    list,
    shown.map((report) => {
      const item = el("li");
      item.append(el(report.date === today ? "strong" : "span", report.name + " "));
      for (const format of report.formats) {
        const link = el("a", format);
        link.href = API + "reports/" + encodeURIComponent(report.name) + "?format=" + format;
        link.addEventListener("click", (event) => openReport(event, link.href));
        item.append(" ", link);
      }
      return item;
    }),
  );
}

// A plain link when reads are open; with a token, the file is fetched with it and shown.
async function openReport(event, href) {
  if (!localStorage.getItem(TOKEN_KEY)) return;
  event.preventDefault();
  const response = await get(href.slice(href.indexOf(API) + API.length));
  window.open(URL.createObjectURL(await response.blob()), "_blank");
}

function cache(figures) {
  document.getElementById("cache").textContent = figures
    ? word("cache", {
        rate: figures.hit_rate + " %",
        hits: figures.hits,
        misses: figures.misses,
        keys: figures.keys,
      })
    : "";
}

function setLanguage(chosen) {
  lang = chosen;
  localStorage.setItem(LANG_KEY, lang);
  const url = new URL(location.href);
  url.searchParams.set("lang", lang);
  history.replaceState(null, "", url);
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll("[data-word]")) {
    node.textContent = word(node.dataset.word);
  }
  for (const button of document.querySelectorAll("#languages button")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }
  document.title = word("title");
  refresh();
}

function start() {
  for (const button of document.querySelectorAll("#languages button")) {
    button.addEventListener("click", () => setLanguage(button.dataset.lang));
  }
  document.getElementById("token").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, event.target.elements.token.value.trim());
    event.target.reset();
    refresh();
  });
  setLanguage(lang);
  setInterval(refresh, REFRESH);
}

start();
