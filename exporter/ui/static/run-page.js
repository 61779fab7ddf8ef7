// One run as people read it: while it goes, its progress; then its report (status, the
// counts with their sum visible, duration beside the rate-limit floor, hints), its files to
// download, and for a preview what it would do, with a confirmation before a mirror run
// that removes people.

import {api, fileUrl, segment} from "./api.js";
import {ACTIVE, badge, h, number, seconds} from "./dom.js";
import {overridesFor, startRun} from "./export-page.js";
import {progressView} from "./progress.js";

function countsView(counts) {
  const parts = [["sent", counts.sent], ["rejected", counts.rejected], ["duplicates", counts.duplicates],
                 ["unchanged", counts.unchanged]];
  if (counts.unsent) parts.push(["unsent", counts.unsent]);
  const sum = parts.reduce((total, [, value]) => total + (value || 0), 0);
  return h("div", {class: "counts"},
    h("p", {class: "equation", "data-testid": "conservation"},
      `${number(counts.rows_read)} rows read = `, parts.map(([label, value], index) =>
        [index ? " + " : "", h("span", {"data-count": label}, number(value)), ` ${label}`]),
      sum === counts.rows_read ? " ✓" : " (does not add up)"),
    h("p", {}, `Removed from the list: ${number(counts.removed)}; removals pending: ${number(counts.remove_pending)}; `
             + `subscribed: ${number(counts.subscribed)}`));
}

function previewView(context, name, state, report, rows) {
  const sync = report.sync || {};
  const toRemove = sync.would_remove || 0;
  const numbers = h("dl", {class: "settings", "data-testid": "preview-counts"},
    [["New", sync.new], ["Changed", sync.changed], ["Unchanged", sync.unchanged], ["To remove", toRemove],
     ["Left the segment", sync.leavers]].map(([term, value]) =>
       [h("dt", {}, term), h("dd", {"data-preview": term.toLowerCase().replace(/ /g, "-")}, number(value ?? 0))]));
  const stopped = sync.guard || sync.damage;
  const guard = stopped ? h("p", {class: "warning", "data-testid": "guard"}, `The guard would stop removals: ${stopped}`)
                        : h("p", {}, "The guard would not stop this run.");
  const sample = h("table", {class: "data"}, h("caption", {}, "Sample rows"),
    h("thead", {}, h("tr", {}, ["Would", "Line", "Email", "Note"].map(title => h("th", {scope: "col"}, title)))),
    h("tbody", {}, rows.map(row => h("tr", {}, h("td", {}, row.would), h("td", {}, row.line),
                                        h("td", {}, row.email), h("td", {}, row.note)))));
  const overrides = overridesFor(context);
  const go = h("button", {type: "button", class: "primary", onclick: () => startRun(context, name,
    {dryRun: false, allowMassRemoval: overrides.value()})}, "Run now");
  let confirm = null;
  if (sync.mode === "mirror" && toRemove > 0) {
    go.disabled = true;
    const box = h("input", {type: "checkbox", id: "confirm-removal",
                            onchange: () => { go.disabled = !box.checked; }});
    confirm = h("p", {class: "confirm"}, box, " ", h("label", {for: "confirm-removal"},
      `I have looked at this preview: remove ${number(toRemove)} people from list ${report.list_id}`));
  }
  return h("section", {"aria-labelledby": "preview-title"}, h("h2", {id: "preview-title"}, "What this run would do"),
           numbers, guard, sample, confirm, overrides.control, go);
}

async function finishedView(context, name, state) {
  const report = state.report;
  const items = [];
  items.push(h("p", {}, "Status: ", badge(report.status), report.verdict ? ` · verdict: ${report.verdict}` : ""));
  items.push(h("p", {"data-testid": "source"}, `Source: ${report.source || "–"} → list ${report.list_id || "–"}`));
  if (report.error) items.push(h("p", {class: "error"}, report.error));
  if (report.dry_run) items.push(h("p", {class: "hint"}, "A preview: nothing was sent; the counts say what a run would do."));
  items.push(countsView(report.counts || {}));
  items.push(h("p", {"data-testid": "timing"}, `Took ${seconds(state.duration_seconds)}; Klaviyo's rate limits `
    + `allow no less than ${seconds(state.floor_seconds)} for its ${number((report.jobs || []).length)} jobs.`));
  for (const hint of report.hints || []) items.push(h("p", {class: "hint"}, hint));
  const files = [];
  if (report.rejects) files.push(h("a", {href: fileUrl(name, state.run_id, "rejects.csv"), download: ""}, "Rejected rows (CSV)"));
  if (report.dry_run && report.sync?.preview) {
    files.push(h("a", {href: fileUrl(name, state.run_id, "preview.csv"), download: ""}, "Preview (CSV)"));
  }
  if (files.length) items.push(h("p", {class: "files"}, files.flatMap((link, index) => index ? [" · ", link] : [link])));
  if (report.dry_run && report.sync) {
    const rows = report.sync.preview ? (await api("GET", `/exports/${segment(name)}/runs/${segment(state.run_id)}/preview`)).data.rows : [];
    items.push(previewView(context, name, state, report, rows));
  }
  return items;
}

export async function runPage(context, name, runId) {
  const path = `/exports/${segment(name)}/runs/${segment(runId)}`;
  const body = h("div", {"data-testid": "run"});
  const section = h("section", {}, h("h1", {}, `Run ${runId}`),
                    h("p", {}, h("a", {href: `#/exports/${segment(name)}`}, `Export ${name}`)), body);
  const render = async (state) => {
    if (state.report) {
      body.replaceChildren(...await finishedView(context, name, state));
    } else {
      body.replaceChildren(h("p", {}, "Status: ", badge(state.status), state.dry_run ? " (a preview)" : ""),
                           progressView(state));
    }
  };
  const first = (await api("GET", path)).data;
  await render(first);
  if (!first.report && ACTIVE.includes(first.status)) {
    const stop = context.every(500, async () => {
      const state = (await api("GET", path)).data;
      await render(state);
      if (state.report || !ACTIVE.includes(state.status)) stop();
    });
  }
  return section;
}
