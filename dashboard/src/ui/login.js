/**
 * The login form: ``Username``, ``Password``, ``Sign in``; errors and
 * "your session expired" in an alert above the fields.
 */

import { ApiError, loginErrorMessage } from "../lib/api.js";
import { byId, setText } from "./dom.js";

export function createLoginView({ login }) {
  const view = byId("login-view");
  const form = byId("login-form");
  const username = byId("login-username");
  const password = byId("login-password");
  const submit = byId("login-submit");
  const message = byId("login-message");
  let busy = false;

  function say(text, tone = "error") {
    setText(message, text ?? "");
    message.hidden = !text;
    message.dataset.tone = tone;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    const user = username.value.trim();
    const pass = password.value;
    if (!user || !pass) {
      say("Enter a username and a password.");
      (user ? password : username).focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    say("");
    try {
      await login(user, pass);
      password.value = "";
    } catch (error) {
      say(loginErrorMessage(error instanceof ApiError ? error : null));
      password.select();
      password.focus();
    } finally {
      busy = false;
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });

  return {
    /** Show the form, with ``notice`` (e.g. "Your session expired...") if given. */
    show(notice = "", tone = "info") {
      view.hidden = false;
      say(notice, tone);
      (username.value ? password : username).focus();
    },
    hide() {
      view.hidden = true;
      say("");
    },
  };
}
