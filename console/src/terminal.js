// The terminal: xterm.js on a PTY session of the sandbox (docs/protocol/streaming.md, PTY
// WebSocket). The socket is opened with a short-lived ticket from `POST {B}/sandboxes/{id}/
// pty-ticket` (the browser cannot send the API key on a WebSocket) plus the session's token.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { apiKey, post, del, sbx, B } from "./api.js";

const OP_DATA = 0x00;
const OP_RESIZE = 0x01;
const OP_READY = 0x02;
const OP_EXIT = 0x03;

/** Opens a shell in `container`; answers {stop()} (closes the socket and ends the session). */
export async function openTerminal(container, sandboxId, onStatus) {
  const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, convertEol: false });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  fit.fit();
  const { cols, rows } = term;
  const session = await post(sbx(sandboxId, "pty"), { command: "bash", args: ["-l"], rows, cols, env: { TERM: "xterm-256color" } });
  const q = new URLSearchParams({ token: session.token });
  // With a key, the socket needs a ticket (a browser cannot send the key on a WebSocket);
  // a server without keys checks none.
  if (apiKey()) {
    const ticket = await post(`${B}/sandboxes/${encodeURIComponent(sandboxId)}/pty-ticket`);
    q.set("ticket", ticket.ticket);
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}${sbx(sandboxId, `pty/${encodeURIComponent(session.session_id)}/ws`)}?${q}`);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();

  const frame = (op, payload) => {
    const out = new Uint8Array(1 + payload.length);
    out[0] = op;
    out.set(payload, 1);
    return out;
  };
  const sendResize = () => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint16(0, term.cols);
    new DataView(b.buffer).setUint16(2, term.rows);
    ws.send(frame(OP_RESIZE, b));
  };
  ws.onopen = () => {
    ws.send(new Uint8Array([OP_READY]));
    sendResize();
    onStatus("connected");
    term.focus();
  };
  ws.onmessage = (ev) => {
    const data = new Uint8Array(ev.data);
    if (data.length === 0) return;
    if (data[0] === OP_DATA) term.write(data.subarray(1));
    else if (data[0] === OP_EXIT && data.length >= 5) {
      const code = new DataView(data.buffer, data.byteOffset + 1, 4).getInt32(0);
      onStatus(`exited (${code})`);
    }
  };
  ws.onclose = (ev) => onStatus(ev.reason ? `closed: ${ev.reason}` : "closed");
  ws.onerror = () => onStatus("connection failed");
  const input = term.onData((d) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(frame(OP_DATA, encoder.encode(d)));
  });
  term.onResize(sendResize);
  const observer = new ResizeObserver(() => {
    try {
      fit.fit();
    } catch {
      // hidden: no size to fit
    }
  });
  observer.observe(container);
  return {
    stop() {
      observer.disconnect();
      input.dispose();
      ws.close();
      // The shell would otherwise idle in the sandbox for a day.
      del(sbx(sandboxId, `pty/${encodeURIComponent(session.session_id)}`)).catch(() => {});
      term.dispose();
    },
  };
}
