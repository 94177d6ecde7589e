// Snapshots: list (polled), restore into a new sandbox, delete.
import { h, replace, bytes, time } from "../dom.js";
import { get, post, del, B } from "../api.js";
import { statusPill } from "./sandboxes.js";

/** The page. */
export function snapshotsPage(notify) {
  const rows = h("tbody", { id: "snapshot-rows" });
  let timer = null;
  let stopped = false;
  let shown = null;
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const r = await get(`${B}/snapshots`);
      const now = JSON.stringify(r.snapshots);
      if (!stopped && now !== shown) {
        shown = now;
        replace(
          rows,
          r.snapshots.length
            ? r.snapshots.map((s) => {
                const name = h("input", { placeholder: "new sandbox name (optional)", size: 22, className: "restore-name" });
                return h(
                  "tr",
                  { "data-id": s.id },
                  h("td", { className: "mono", title: s.id }, s.id.slice(0, 8)),
                  h("td", { className: "mono", title: s.sandbox_id }, h("a", { href: `#/sandbox/${encodeURIComponent(s.sandbox_id)}` }, s.sandbox_id.slice(0, 8))),
                  h("td", {}, s.snapshot_type),
                  h("td", {}, statusPill(s.status)),
                  h("td", {}, bytes(s.size_bytes)),
                  // The digest makes it long: the name in the cell, all of it on hover.
                  h("td", { title: s.base_image || "" }, (s.base_image || "").split("@")[0]),
                  h("td", {}, time(s.created_at)),
                  h(
                    "td",
                    { className: "actions" },
                    s.status === "completed" ? name : null,
                    s.status === "completed"
                      ? h("button", {
                          "data-action": "restore",
                          onclick: async () => {
                            const req = { snapshot_id: s.id, wait: false };
                            if (name.value.trim()) req.name = name.value.trim();
                            try {
                              const c = await post(`${B}/sandboxes`, req);
                              location.hash = `#/sandbox/${encodeURIComponent(c.sandbox_id)}`;
                            } catch (err) {
                              notify(`restore: ${err.message}`);
                            }
                          },
                        }, "Restore")
                      : null,
                    h("button", {
                      className: "danger",
                      "data-action": "delete",
                      onclick: async () => {
                        if (!window.confirm(`Delete snapshot ${s.id}?`)) return;
                        try {
                          await del(`${B}/snapshots/${encodeURIComponent(s.id)}`);
                        } catch (err) {
                          notify(`delete: ${err.message}`);
                        }
                        refresh();
                      },
                    }, "Delete"),
                  ),
                );
              })
            : h("tr", {}, h("td", { colSpan: 8, className: "empty" }, "No snapshots. Take one from a running sandbox.")),
        );
      }
    } catch (err) {
      if (!stopped && err.status !== 401) notify(`snapshots: ${err.message}`);
    }
    if (!stopped) timer = setTimeout(refresh, 3000);
  };
  refresh();
  return {
    el: h("section", { id: "page-snapshots" }, h("div", { className: "card" }, h("h2", {}, "Snapshots"), h("table", { className: "list", id: "snapshots" }, h("thead", {}, h("tr", {}, ["Id", "Sandbox", "Type", "Status", "Size", "Image", "Created", ""].map((t) => h("th", {}, t)))), rows))),
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
