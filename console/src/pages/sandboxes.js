// The sandbox list: live status and resources (polled), create, restore a snapshot, and each
// sandbox's lifecycle actions.
import { h, replace, time, bytes } from "../dom.js";
import { get, post, del, B } from "../api.js";

const POLL_MS = 2000;

/** Status pill. */
export function statusPill(status) {
  return h("span", { className: `status status-${String(status).replace(/[^a-z]/g, "")}`, "data-status": status }, status);
}

/** The actions of one sandbox (list rows and the sandbox page share them). */
export function lifecycleButtons(sb, notify, refresh) {
  const act = (label, fn, cls = "") =>
    h("button", {
      className: cls,
      "data-action": label.toLowerCase(),
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          await fn();
        } catch (err) {
          notify(`${label} ${sb.name || sb.id}: ${err.message}`);
        } finally {
          e.target.disabled = false;
          refresh();
        }
      },
    }, label);
  const id = encodeURIComponent(sb.id);
  const out = [];
  if (sb.status === "running") {
    out.push(act("Suspend", () => post(`${B}/sandboxes/${id}/suspend`)));
    out.push(act("Snapshot", async () => {
      const r = await post(`${B}/sandboxes/${id}/snapshot`, { snapshot_type: "memory" });
      notify(`snapshot ${r.snapshot_id} started (see Snapshots)`, "info");
    }));
  }
  if (sb.status === "suspended") out.push(act("Resume", () => post(`${B}/sandboxes/${id}/resume`)));
  out.push(act("Delete", async () => {
    if (!window.confirm(`Delete sandbox ${sb.name || sb.id}?`)) return;
    await del(`${B}/sandboxes/${id}`);
  }, "danger"));
  return out;
}

function field(label, input) {
  return h("label", {}, h("span", {}, label), input);
}

/** The create form (image, resources, name, optionally a snapshot to restore). */
function createForm(notify, refresh) {
  const image = h("input", { id: "new-image", value: "default", size: 16 });
  const name = h("input", { id: "new-name", placeholder: "optional", size: 16, pattern: "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" });
  const cpus = h("input", { id: "new-cpus", type: "number", value: "1", min: "0.1", step: "0.1" });
  const memory = h("input", { id: "new-memory", type: "number", value: "1024", min: "256", step: "256" });
  const disk = h("input", { id: "new-disk", type: "number", value: "10240", min: "512", step: "512" });
  const snapshot = h("select", { id: "new-snapshot" }, h("option", { value: "" }, "none: boot the image"));
  get(`${B}/snapshots`)
    .then((r) => {
      for (const s of r.snapshots.filter((s) => s.status === "completed")) {
        snapshot.append(h("option", { value: s.id }, `${s.id.slice(0, 8)} · ${s.snapshot_type} · ${s.base_image || ""}`));
      }
    })
    .catch(() => {});
  const button = h("button", { type: "submit", id: "create" }, "Create");
  return h(
    "form",
    {
      className: "card create",
      id: "create-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const req = { wait: false };
        if (name.value.trim()) req.name = name.value.trim();
        if (snapshot.value) {
          req.snapshot_id = snapshot.value;
        } else {
          req.image = image.value.trim() || "default";
          req.resources = { cpus: Number(cpus.value), memory_mb: Number(memory.value), disk_mb: Number(disk.value) };
        }
        button.disabled = true;
        try {
          const r = await post(`${B}/sandboxes`, req);
          notify(`sandbox ${r.name || r.sandbox_id} is ${r.status}`, "info");
        } catch (err) {
          notify(`create: ${err.message}`);
        } finally {
          button.disabled = false;
          refresh();
        }
      },
    },
    h("h2", {}, "New sandbox"),
    h("div", { className: "row" }, field("Image", image), field("Name", name), field("CPUs", cpus), field("Memory MiB", memory), field("Disk MiB", disk), field("Restore snapshot", snapshot), button),
  );
}

/** Reads one running sandbox's metrics into its row's live cells. */
async function sample(id, cells) {
  try {
    const m = await get(`${B}/sandboxes/${encodeURIComponent(id)}/metrics`);
    if (cells.last && m.timestamp > cells.last.timestamp) {
      const pct = ((m.cpu_seconds - cells.last.cpu_seconds) / ((m.timestamp - cells.last.timestamp) / 1000)) * 100;
      cells.cpu.textContent = `${Math.max(0, pct).toFixed(1)} %`;
    }
    cells.last = m;
    cells.mem.textContent = bytes(m.memory_bytes);
  } catch {
    // It stopped running between the list and this request: the next list shows it.
  }
}

/** The page. */
export function sandboxList(notify) {
  const body = h("tbody", { id: "sandbox-rows" });
  const table = h(
    "table",
    { className: "list", id: "sandboxes" },
    h("thead", {}, h("tr", {}, ["Name", "Id", "Status", "Image", "CPUs", "Memory", "Disk", "CPU use", "Memory use", "Created", ""].map((t) => h("th", {}, t)))),
    body,
  );
  let timer = null;
  let stopped = false;
  let shown = null;
  // Per running sandbox: its live cells and the last metrics sample (CPU % needs two).
  let live = new Map();
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const r = await get(`${B}/sandboxes`);
      if (stopped) return;
      // Rebuild the rows only when something changed (buttons stay put under the pointer);
      // the live figures are updated in place.
      const now = JSON.stringify(r.sandboxes);
      if (now !== shown) {
        shown = now;
        const before = live;
        live = new Map();
        const rows = r.sandboxes.map((sb) => {
          const cpu = h("td", { className: "live", "data-live": "cpu" });
          const mem = h("td", { className: "live", "data-live": "memory" });
          if (sb.status === "running") live.set(sb.id, { cpu, mem, last: before.get(sb.id)?.last || null });
          return h(
            "tr",
            { "data-id": sb.id, "data-name": sb.name || "" },
            h("td", { className: "name" }, h("a", { href: `#/sandbox/${encodeURIComponent(sb.id)}` }, sb.name || "(ephemeral)")),
            h("td", { className: "mono", title: sb.id }, sb.id.slice(0, 8)),
            h("td", {}, statusPill(sb.status)),
            h("td", {}, sb.image),
            h("td", {}, String(sb.resources?.cpus ?? "")),
            h("td", {}, `${sb.resources?.memory_mb ?? ""} MiB`),
            h("td", {}, `${sb.resources?.disk_mb ?? ""} MiB`),
            cpu,
            mem,
            h("td", {}, time(sb.created_at)),
            h("td", { className: "actions" }, lifecycleButtons(sb, notify, refresh)),
          );
        });
        replace(body, rows.length ? rows : h("tr", {}, h("td", { colSpan: 11, className: "empty" }, "No sandboxes yet.")));
      }
      await Promise.all([...live.entries()].map(([id, cells]) => sample(id, cells)));
    } catch (err) {
      if (!stopped && err.status !== 401) notify(`list: ${err.message}`);
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  };
  refresh();
  const el = h("section", { id: "page-sandboxes" }, createForm(notify, refresh), h("div", { className: "card" }, h("h2", {}, "Sandboxes"), table));
  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
