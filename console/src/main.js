// Alcove's web console: a single-page app with hash routes.
//   #/                 sandboxes (list, create, restore)
//   #/sandbox/<id>     one sandbox (terminal, files, processes, logs, desktop, metrics)
//   #/snapshots        snapshots
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { h, replace } from "./dom.js";
import { apiKey, setApiKey, whenUnauthorized, get, B } from "./api.js";
import { showLogin } from "./login.js";
import { sandboxList } from "./pages/sandboxes.js";
import { sandboxPage } from "./pages/sandbox.js";
import { snapshotsPage } from "./pages/snapshots.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const banner = document.getElementById("banner");

/** The page on screen: its stop() ends its polls and sockets when another is shown. */
let current = null;

/** Shows an error (or a notice) above the page until dismissed or replaced. */
export function notify(message, kind = "error") {
  banner.className = kind;
  replace(banner, h("span", { id: "banner-text" }, message), h("button", { className: "link", onclick: () => (banner.hidden = true) }, "dismiss"));
  banner.hidden = false;
}

function stopCurrent() {
  if (current && current.stop) current.stop();
  current = null;
}

function route() {
  stopCurrent();
  banner.hidden = true;
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/sandbox\/([^/]+)(?:\/([a-z]+))?$/);
  let page;
  if (m) {
    let id = m[1];
    try {
      id = decodeURIComponent(id);
    } catch {
      // a malformed escape: show (and ask for) it as typed
    }
    page = sandboxPage(id, m[2] || "terminal", notify);
  } else if (hash === "#/snapshots") {
    page = snapshotsPage(notify);
  } else {
    page = sandboxList(notify);
  }
  replace(nav, h("a", { href: "#/", className: m || hash === "#/snapshots" ? "" : "active" }, "Sandboxes"), h("a", { href: "#/snapshots", className: hash === "#/snapshots" ? "active" : "" }, "Snapshots"));
  replace(main, page.el);
  current = page;
}

function signedIn() {
  replace(who, apiKey() ? h("button", { className: "link", id: "logout", onclick: logout }, "Sign out") : "");
  window.addEventListener("hashchange", route);
  route();
}

function logout() {
  setApiKey("");
  location.hash = "#/";
  location.reload();
}

let loggingIn = false;
function needKey(message) {
  if (loggingIn) return;
  loggingIn = true;
  stopCurrent();
  window.removeEventListener("hashchange", route);
  replace(nav);
  replace(who);
  banner.hidden = true;
  showLogin(main, () => {
    loggingIn = false;
    signedIn();
  }, message);
}

async function start() {
  whenUnauthorized(() => needKey(apiKey() ? "The server refused the key." : ""));
  try {
    await get(`${B}/sandboxes`);
    signedIn();
  } catch (e) {
    if (e.status !== 401) {
      signedIn();
      notify(e.message);
    }
  }
}

start();
