// The page's router: one view per address (#/…), rebuilt from the API on each visit; a
// view that follows a running run polls while it is shown and stops when left.

import {api, ApiError} from "./api.js";
import {h, mount, say} from "./dom.js";
import {exportPage} from "./export-page.js";
import {connectionForm, connectionsPage, exportForm} from "./forms.js";
import {overview} from "./overview.js";
import {runPage} from "./run-page.js";

const timers = new Set();
const context = {
  me: null,
  every(milliseconds, task) {
    const timer = setInterval(task, milliseconds);
    timers.add(timer);
    return () => { clearInterval(timer); timers.delete(timer); };
  },
  go(hash) { location.hash = hash; },
};

function header(me) {
  document.getElementById("who").textContent = `${me.name || me.object_id} · ${me.roles.join(", ") || "no role"}`;
  document.getElementById("nav-connections").hidden = !me.is_admin;
  document.getElementById("nav-new-export").hidden = me.roles.length === 0;
}

async function view(parts) {
  const [first, name, sub, runId] = parts;
  if (!first) return overview(context);
  if (first === "new-export") return exportForm(context, null);
  if (first === "connections" && !name) return connectionsPage(context);
  if (first === "connections") return connectionForm(context, name === "new" ? null : name);
  if (first === "exports" && name && !sub) return exportPage(context, name);
  if (first === "exports" && sub === "edit") return exportForm(context, name);
  if (first === "exports" && sub === "runs" && runId) return runPage(context, name, runId);
  return h("section", {}, h("h1", {}, "Not found"), h("p", {}, "This page does not exist. "),
           h("a", {href: "#/"}, "Back to the exports"));
}

function signIn() {
  const target = "/.auth/login/aad?post_login_redirect_uri=" + encodeURIComponent("/api/ui");
  return h("section", {}, h("h1", {}, "Sign in"),
           h("p", {}, "You are not signed in, or your sign-in has expired."),
           h("a", {href: target, class: "button"}, "Sign in with Microsoft"));
}

async function route() {
  for (const timer of timers) clearInterval(timer);
  timers.clear();
  say("");
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (!context.me) {
      context.me = (await api("GET", "/me")).data;
      header(context.me);
    }
    mount(await view(parts));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      context.me = null;
      mount(signIn());
      return;
    }
    mount(h("section", {}, h("h1", {}, "Something went wrong"), h("p", {class: "error"}, error.message)));
  }
}

window.addEventListener("hashchange", route);
route();
