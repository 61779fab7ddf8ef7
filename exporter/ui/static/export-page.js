// One export: its settings, run now or preview, and its recent runs charted. A mirror export
// is previewed before it runs: its run button is on the preview, where removals are confirmed.

import {api, ApiError, segment} from "./api.js";
import {h, say} from "./dom.js";
import {historyView} from "./progress.js";

export async function startRun(context, name, {dryRun, allowMassRemoval}) {
  const body = {dryRun};
  if (allowMassRemoval) body.allowMassRemoval = true;
  try {
    const {data} = await api("POST", `/exports/${segment(name)}/runs`, {body});
    say(dryRun ? "Preview started." : "Run started.");
    context.go(`#/exports/${segment(name)}/runs/${segment(data.run_id)}`);
  } catch (error) {
    say(error instanceof ApiError ? error.message : String(error));
  }
}

export function overridesFor(context) {
  if (!context.me.is_admin) return {control: null, value: () => false};
  const box = h("input", {type: "checkbox", id: "allow-mass-removal"});
  const control = h("p", {class: "override"}, box, " ",
    h("label", {for: "allow-mass-removal"}, "Allow mass removal: remove past the guard (administrators only)"));
  return {control, value: () => box.checked};
}

export async function exportPage(context, name) {
  const [{data: item}, {data: history}] = await Promise.all([
    api("GET", `/exports/${segment(name)}`), api("GET", `/exports/${segment(name)}/runs`)]);
  const mirror = item.mode === "mirror";
  const overrides = overridesFor(context);
  const settings = h("dl", {class: "settings"}, [
    ["Connection", item.connection], ["List", item.list_id], ["Source", item.source],
    ["Mode", mirror ? "mirror (also removes members who left the segment)" : "add"],
    ["Email column", item.mapping?.email ?? "–"], ["Enabled", item.enabled === false ? "no (paused)" : "yes"],
  ].map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  const preview = h("button", {type: "button", onclick: () => startRun(context, name, {dryRun: true,
    allowMassRemoval: overrides.value()})}, "Preview");
  const run = mirror
    ? h("p", {class: "hint"}, "A mirror export removes people: preview it first; the preview has the button that runs it.")
    : h("button", {type: "button", class: "primary", onclick: () => startRun(context, name,
        {dryRun: false, allowMassRemoval: overrides.value()})}, "Run now");
  return h("section", {},
    h("h1", {}, `Export ${name}`),
    settings,
    h("p", {}, h("a", {href: `#/exports/${segment(name)}/edit`}, "Change this export")),
    h("h2", {}, "Run"),
    h("div", {class: "actions"}, preview, run),
    overrides.control,
    h("h2", {}, "Recent runs"),
    historyView(name, history.runs));
}
