// One sandbox: its status and live metrics, and tabs for the terminal, files, processes, logs
// and desktop. Everything the sandbox produced (file names, commands, log lines) is shown as
// text nodes only.
import { h, replace, bytes, time } from "../dom.js";
import { get, post, request, sbx, pathQuery, B } from "../api.js";
import { statusPill, lifecycleButtons } from "./sandboxes.js";
import { openTerminal } from "../terminal.js";

const TABS = ["terminal", "files", "processes", "logs", "desktop"];
const POLL_MS = 2000;

/** The page for sandbox `id`, showing tab `tab`. */
export function sandboxPage(id, tab, notify) {
  if (!TABS.includes(tab)) tab = "terminal";
  const enc = encodeURIComponent(id);
  const title = h("h1", { id: "sandbox-name" }, id);
  const status = h("span", { id: "sandbox-status" });
  const actions = h("span", { className: "actions", id: "sandbox-actions" });
  const facts = h("dl", { className: "facts", id: "sandbox-facts" });
  const metrics = h("dl", { className: "facts", id: "sandbox-metrics" });
  const panel = h("div", { className: "panel", id: `tab-${tab}` });
  const tabs = h("nav", { className: "tabs" }, TABS.map((t) => h("a", { href: `#/sandbox/${enc}/${t}`, className: t === tab ? "active" : "", id: `tab-link-${t}` }, t[0].toUpperCase() + t.slice(1))));

  let stopped = false;
  let timer = null;
  let info = null;
  let lastCpu = null;
  let shownInfo = null;
  const stops = [];
  let loaded;
  // Tabs wait for the first answer: a request through the proxy would wake a suspended
  // sandbox (auto_resume), so they touch the sandbox only while it runs.
  const ready = new Promise((resolve) => (loaded = resolve));
  const ctx = { id, panel, notify, ready, running: () => info?.status === "running", status: () => info?.status || "unknown" };

  const refresh = async () => {
    clearTimeout(timer);
    try {
      info = await get(`${B}/sandboxes/${enc}`);
      if (stopped) return;
      const now = JSON.stringify(info);
      if (now !== shownInfo) {
        shownInfo = now;
        title.textContent = info.name || info.id;
        replace(status, statusPill(info.status));
        replace(actions, lifecycleButtons(info, notify, refresh));
        replace(
          facts,
          [["Id", info.id], ["Image", info.image], ["CPUs", String(info.resources?.cpus)], ["Memory", `${info.resources?.memory_mb} MiB`], ["Disk", `${info.resources?.disk_mb} MiB`], ["Created", time(info.created_at)]].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
        );
      }
      if (info.status === "running") {
        const m = await get(`${B}/sandboxes/${enc}/metrics`);
        let cpu = "";
        if (lastCpu && m.timestamp > lastCpu.timestamp) {
          const pct = ((m.cpu_seconds - lastCpu.cpu_seconds) / ((m.timestamp - lastCpu.timestamp) / 1000)) * 100;
          cpu = `${Math.max(0, pct).toFixed(1)} %`;
        }
        lastCpu = m;
        replace(
          metrics,
          [["CPU", cpu || "…"], ["Memory used", `${bytes(m.memory_bytes)} of ${bytes(m.memory_limit_bytes)}`], ["Processes", `${m.pids}`], ["Disk used", m.disk_used_bytes === null ? "" : `${bytes(m.disk_used_bytes)} of ${bytes(m.disk_limit_bytes)}`]].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { "data-metric": k }, v))),
        );
      } else {
        lastCpu = null;
        replace(metrics, h("div", {}, h("dt", {}, "Metrics"), h("dd", {}, `none while ${info.status}`)));
      }
    } catch (err) {
      if (!stopped && err.status !== 401) notify(`sandbox: ${err.message}`);
    }
    loaded();
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  };
  refresh();

  const el = h("section", { id: "page-sandbox" }, h("div", { className: "card head" }, h("div", { className: "row" }, h("a", { href: "#/" }, "← Sandboxes"), title, status, actions), facts, metrics), tabs, panel);

  const show = { terminal: terminalTab, files: filesTab, processes: processesTab, logs: logsTab, desktop: desktopTab }[tab];
  const s = show(ctx);
  if (s) stops.push(s);

  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
      for (const f of stops) f();
    },
  };
}

/** A line in place of a tab's content while the sandbox does not run. */
function notRunning(what, status) {
  const hint = status === "suspended" ? " Resume it to see them." : status === "pending" ? " They show once it runs." : "";
  return h("p", { className: "empty", id: "not-running" }, `The sandbox is ${status}: no ${what} to show.${hint}`);
}

/** Calls `fn` once the sandbox runs (the page's poll keeps `running()` current). */
function whenRunning(running, isStopped, fn) {
  const check = () => {
    if (isStopped()) return;
    if (running()) fn();
    else setTimeout(check, 500);
  };
  check();
}

function terminalTab({ id, panel, notify, ready, running, status }) {
  const state = h("span", { id: "terminal-state" }, "connecting…");
  const box = h("div", { className: "terminal", id: "terminal" });
  let term = null;
  let stopped = false;
  const connect = () => {
    replace(panel, h("div", { className: "row" }, h("strong", {}, "Terminal"), state), box);
    state.textContent = "connecting…";
    // After the page is in the document, so that xterm can measure it.
    requestAnimationFrame(() =>
      openTerminal(box, id, (s) => (state.textContent = s))
        .then((t) => {
          if (stopped) t.stop();
          else term = t;
        })
        .catch((err) => {
          state.textContent = "failed";
          notify(`terminal: ${err.message}`);
        }),
    );
  };
  ready.then(() => {
    if (stopped) return;
    if (!running()) replace(panel, notRunning("terminal", status()));
    // A sandbox that starts (or is resumed) while the tab is open gets its terminal then.
    whenRunning(running, () => stopped, connect);
  });
  return () => {
    stopped = true;
    if (term) term.stop();
  };
}

function filesTab({ id, panel, notify, ready, running, status }) {
  let dir = "/root";
  const where = h("input", { id: "files-path", value: dir, size: 40 });
  const rows = h("tbody", { id: "file-rows" });
  const upload = h("input", { type: "file", id: "upload", multiple: true });
  const join = (d, n) => (d.endsWith("/") ? d + n : `${d}/${n}`);
  const parent = (d) => d.replace(/\/[^/]+\/?$/, "") || "/";

  const list = async (d) => {
    try {
      const r = await get(`${sbx(id, "files/list")}?${pathQuery(d)}`);
      dir = r.path || d;
      where.value = dir;
      const out = [];
      if (dir !== "/") out.push(h("tr", {}, h("td", {}, h("button", { className: "link", onclick: () => list(parent(dir)) }, "..")), h("td", {}), h("td", {}), h("td", {})));
      for (const e of r.entries) {
        const full = join(dir, e.name);
        out.push(
          h(
            "tr",
            { "data-file": e.name },
            h("td", { className: "name" }, e.is_dir ? h("button", { className: "link", onclick: () => list(full) }, `${e.name}/`) : e.name),
            h("td", {}, e.is_dir ? "" : bytes(e.size)),
            h("td", {}, time(e.modified_at)),
            h(
              "td",
              { className: "actions" },
              e.is_dir ? null : h("button", { "data-action": "download", onclick: () => download(full, e.name) }, "Download"),
              e.is_dir
                ? null
                : h("button", {
                    className: "danger",
                    "data-action": "delete",
                    onclick: async () => {
                      if (!window.confirm(`Delete ${full}?`)) return;
                      try {
                        await request("DELETE", `${sbx(id, "files")}?${pathQuery(full)}`);
                      } catch (err) {
                        notify(`delete: ${err.message}`);
                      }
                      list(dir);
                    },
                  }, "Delete"),
            ),
          ),
        );
      }
      replace(rows, out);
    } catch (err) {
      notify(`files: ${err.message}`);
    }
  };

  const download = async (full, name) => {
    try {
      const resp = await request("GET", `${sbx(id, "files")}?${pathQuery(full)}`, { raw: true });
      const url = URL.createObjectURL(await resp.blob());
      const a = h("a", { download: name });
      a.href = url; // a blob: URL of this origin (h() only takes the console's own links)
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      notify(`download: ${err.message}`);
    }
  };

  upload.onchange = async () => {
    for (const f of upload.files) {
      try {
        await request("PUT", `${sbx(id, "files")}?${pathQuery(join(dir, f.name))}`, { body: f });
        notify(`uploaded ${join(dir, f.name)}`, "info");
      } catch (err) {
        notify(`upload ${f.name}: ${err.message}`);
      }
    }
    upload.value = "";
    list(dir);
  };

  replace(
    panel,
    h("form", { className: "row", onsubmit: (e) => (e.preventDefault(), list(where.value.trim() || "/")) }, h("label", {}, h("span", {}, "Directory"), where), h("button", { type: "submit", id: "files-go" }, "Open"), h("label", { className: "upload" }, h("span", {}, "Upload into this directory"), upload)),
    h("table", { className: "list", id: "files" }, h("thead", {}, h("tr", {}, ["Name", "Size", "Modified", ""].map((t) => h("th", {}, t)))), rows),
  );
  let stopped = false;
  ready.then(() => {
    if (!running()) replace(rows, h("tr", {}, h("td", { colSpan: 4 }, notRunning("files", status()))));
    whenRunning(running, () => stopped, () => list(dir));
  });
  return () => {
    stopped = true;
  };
}

function processesTab({ id, panel, notify, ready, running, status }) {
  const rows = h("tbody", { id: "process-rows" });
  let timer = null;
  let stopped = false;
  let shown = null;
  const refresh = async () => {
    clearTimeout(timer);
    await ready;
    if (!running()) {
      shown = null;
      replace(rows, h("tr", {}, h("td", { colSpan: 5 }, notRunning("processes", status()))));
      if (!stopped) timer = setTimeout(refresh, POLL_MS);
      return;
    }
    try {
      const r = await get(sbx(id, "processes"));
      const now = JSON.stringify(r.processes);
      if (!stopped && now !== shown) {
        shown = now;
        replace(
          rows,
          r.processes.map((p) =>
            h(
              "tr",
              { "data-pid": p.pid },
              h("td", { className: "mono" }, String(p.pid)),
              h("td", {}, p.status),
              h("td", { className: "mono command" }, [p.command, ...(p.args || [])].join(" ")),
              h("td", {}, time(p.started_at)),
              h(
                "td",
                { className: "actions" },
                p.status === "running"
                  ? h("button", {
                      className: "danger",
                      "data-action": "kill",
                      onclick: async () => {
                        try {
                          await post(sbx(id, `processes/${p.pid}/signal`), { signal: 9 });
                        } catch (err) {
                          notify(`kill ${p.pid}: ${err.message}`);
                        }
                        refresh();
                      },
                    }, "Kill")
                  : null,
              ),
            ),
          ),
        );
      }
    } catch (err) {
      if (!stopped && err.status !== 401) notify(`processes: ${err.message}`);
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  };
  replace(panel, h("table", { className: "list", id: "processes" }, h("thead", {}, h("tr", {}, ["PID", "Status", "Command", "Started", ""].map((t) => h("th", {}, t)))), rows));
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

const LEVELS = { 1: "trace", 2: "debug", 3: "info", 4: "warn", 5: "error", 6: "fatal" };

function logsTab({ id, panel, notify }) {
  const out = h("div", { className: "logs", id: "log-lines" });
  const follow = h("input", { type: "checkbox", id: "follow", checked: true });
  const seen = new Set();
  let timer = null;
  let stopped = false;
  const poll = async () => {
    clearTimeout(timer);
    try {
      const r = await get(`${B}/sandboxes/${encodeURIComponent(id)}/logs?tail=500`);
      const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      for (const rec of r.logs) {
        if (seen.has(rec.uuid)) continue;
        seen.add(rec.uuid);
        out.append(h("div", { className: `line level-${LEVELS[rec.level] || rec.level}` }, h("span", { className: "ts" }, time(rec.timestamp)), h("span", { className: "lvl" }, LEVELS[rec.level] || String(rec.level)), h("span", { className: "body" }, rec.body)));
      }
      if (atBottom) out.scrollTop = out.scrollHeight;
    } catch (err) {
      if (!stopped && err.status !== 401) notify(`logs: ${err.message}`);
    }
    if (!stopped && follow.checked) timer = setTimeout(poll, 1500);
  };
  follow.onchange = () => follow.checked && poll();
  replace(panel, h("div", { className: "row" }, h("label", { className: "check" }, follow, h("span", {}, "Follow")), h("button", { onclick: poll }, "Refresh")), out);
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function desktopTab({ id, panel, notify }) {
  const password = h("input", { type: "password", id: "vnc-password", placeholder: "VNC password (optional)", autocomplete: "off" });
  const frame = h("div", { className: "desktop", id: "desktop-frame" });
  const open = async (e) => {
    e.preventDefault();
    try {
      const r = await post(`${B}/sandboxes/${encodeURIComponent(id)}/desktop`);
      // Same origin as the console whatever public URL the server was given (frame-src 'self').
      const u = new URL(r.url, location.href);
      let src = u.pathname + u.search;
      if (password.value) src += `#${new URLSearchParams({ password: password.value })}`;
      const iframe = h("iframe", { title: "desktop", id: "desktop" });
      iframe.src = src;
      replace(frame, iframe);
    } catch (err) {
      notify(`desktop: ${err.message}`);
    }
  };
  replace(
    panel,
    h("form", { className: "row", onsubmit: open }, h("span", {}, "The desktop of a desktop image (alcove/desktop), through noVNC."), password, h("button", { type: "submit", id: "open-desktop" }, "Open desktop")),
    frame,
  );
  return null;
}
