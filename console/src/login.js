// The login form: asks for an API key and keeps it for this tab only.
import { h, replace } from "./dom.js";
import { setApiKey, get, B } from "./api.js";

/** Shows the form in `main`; `done()` runs once a key was accepted. */
export function showLogin(main, done, message = "") {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off", placeholder: "API key", required: true });
  const error = h("p", { className: "error", id: "login-error" }, message);
  const form = h(
    "form",
    {
      className: "card login",
      onsubmit: async (e) => {
        e.preventDefault();
        setApiKey(input.value.trim());
        try {
          await get(`${B}/sandboxes`);
          done();
        } catch (err) {
          setApiKey("");
          error.textContent = err.status === 401 ? "This key was refused." : err.message;
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", {}, "This server needs an API key (alcove serve --api-key). It stays in this browser tab only."),
    input,
    h("button", { type: "submit", id: "login" }, "Sign in"),
    error,
  );
  replace(main, form);
  input.focus();
}
