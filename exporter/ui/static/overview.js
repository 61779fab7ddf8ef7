// Every export the person may use, at a glance: its connection, list, mode and state, the
// newest run's status and counts, and a progress bar while a run is going (refreshed).

import {api} from "./api.js";
import {ACTIVE, badge, h, number, when} from "./dom.js";
import {progressView} from "./progress.js";

function row(item) {
  const last = item.last_run || {};
  const counts = last.counts || {};
  const href = `#/exports/${encodeURIComponent(item.name)}`;
  const running = ACTIVE.includes(last.status);
  return h("tr", {"data-export": item.name},
    h("th", {scope: "row"}, h("a", {href}, item.name)),
    h("td", {}, item.connection),
    h("td", {}, item.list_id),
    h("td", {}, item.mode),
    h("td", {}, item.enabled ? "yes" : "paused"),
    h("td", {}, badge(last.status), " ",
      last.run_id ? h("a", {href: `${href}/runs/${encodeURIComponent(last.run_id)}`, class: "small"},
                      when(last.updated_at)) : null,
      running ? progressView(last) : null),
    h("td", {class: "num"}, number(counts.sent)),
    h("td", {class: "num"}, number(counts.rejected)),
    h("td", {class: "num"}, number(counts.removed)));
}

export async function overview(context) {
  const {data} = await api("GET", "/exports");
  const body = h("tbody", {}, data.exports.map(row));
  const table = h("table", {class: "data", "data-testid": "exports"},
    h("caption", {}, `Refreshed on the schedule ${data.schedule || "of the app"}, on a dropped file, or on demand`),
    h("thead", {}, h("tr", {}, ["Export", "Connection", "List", "Mode", "Enabled", "Newest run", "Sent",
                                "Rejected", "Removed"].map(title => h("th", {scope: "col"}, title)))),
    body);
  if (data.exports.some(item => ACTIVE.includes(item.last_run?.status))) {
    const stop = context.every(1000, async () => {
      const fresh = (await api("GET", "/exports")).data;
      body.replaceChildren(...fresh.exports.map(row));
      if (!fresh.exports.some(item => ACTIVE.includes(item.last_run?.status))) stop();
    });
  }
  return h("section", {},
    h("h1", {}, "Exports"),
    data.exports.length ? table : h("p", {}, "No exports you may use yet. ",
                                    h("a", {href: "#/new-export"}, "Add one"), "."));
}
