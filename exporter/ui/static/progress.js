// What people would rather look at than read: a run's progress against what it expects, and
// an export's recent runs as small bar charts (with the same numbers in a table below them).

import {h, number, seconds, svg, when} from "./dom.js";

export function progressView(state) {
  const progress = state.progress || {};
  const read = progress.rows_read || 0;
  const expected = Math.max(progress.expected_rows || 0, read) || 1;
  const accepted = progress.profiles_accepted || 0;
  const imported = progress.profiles_imported || 0;
  const finish = progress.earliest_finish ? `not before ${when(progress.earliest_finish)}` : "";
  return h("div", {class: "progress", "data-testid": "progress"},
    h("label", {for: "bar-read"}, `Rows read: ${number(read)} of about ${number(expected)}`),
    h("progress", {id: "bar-read", max: expected, value: read}),
    h("label", {for: "bar-imported"},
      `Profiles imported by Klaviyo: ${number(imported)} of ${number(accepted)} accepted ` +
      `(${number(progress.jobs_accepted || 0)} jobs accepted, ${number(progress.jobs_in_flight || 0)} in flight)`),
    h("progress", {id: "bar-imported", max: Math.max(accepted, 1), value: imported}),
    finish ? h("p", {class: "hint"}, `Klaviyo's rate limits: ${finish}`) : null);
}

const SERIES = [["sent", "Sent", "bar-sent"], ["rejected", "Rejected", "bar-rejected"], ["removed", "Removed", "bar-removed"]];

export function historyView(exportName, runs) {
  const finished = runs.filter(run => !run.dry_run && run.counts && run.duration_seconds !== undefined)
    .slice(0, 12).reverse();  // previews send nothing: they are listed below, not charted
  if (!runs.length) return h("p", {}, "No runs yet.");
  const width = 560, height = 140, pad = 24;
  const slot = (width - pad) / Math.max(finished.length, 1);
  const most = Math.max(1, ...finished.map(run => SERIES.reduce((sum, [key]) => sum + (run.counts[key] || 0), 0)));
  const rows = svg("svg", {viewBox: `0 0 ${width} ${height + 20}`, role: "img", class: "chart",
                           "aria-label": "Rows sent, rejected and removed per run, oldest first"});
  const slowest = Math.max(1, ...finished.map(run => Math.max(run.duration_seconds || 0, run.floor_seconds || 0)));
  const times = svg("svg", {viewBox: `0 0 ${width} ${height + 20}`, role: "img", class: "chart",
                            "aria-label": "Duration of each run beside the rate-limit floor, oldest first"});
  finished.forEach((run, index) => {
    const x = pad + index * slot + slot * 0.15;
    let top = height;
    for (const [key, label, css] of SERIES) {
      const size = ((run.counts[key] || 0) / most) * (height - 10);
      top -= size;
      rows.append(svg("rect", {x, y: top, width: slot * 0.7, height: size, class: css},
                      svg("title", {}, `${run.run_id}: ${label.toLowerCase()} ${number(run.counts[key] || 0)}`)));
    }
    const tall = ((run.duration_seconds || 0) / slowest) * (height - 10);
    times.append(svg("rect", {x, y: height - tall, width: slot * 0.7, height: tall, class: "bar-duration"},
                     svg("title", {}, `${run.run_id}: ${seconds(run.duration_seconds)}`)));
    const floor = height - ((run.floor_seconds || 0) / slowest) * (height - 10);
    times.append(svg("line", {x1: x - 2, x2: x + slot * 0.7 + 2, y1: floor, y2: floor, class: "floor"},
                     svg("title", {}, `floor ${seconds(run.floor_seconds)}`)));
  });
  for (const chart of [rows, times]) {
    chart.append(svg("line", {x1: pad, x2: width, y1: height, y2: height, class: "axis"}));
  }
  const legend = h("p", {class: "legend"}, SERIES.map(([, label, css]) => h("span", {class: `key ${css}`}, label)),
                   h("span", {class: "key bar-duration"}, "Duration"), h("span", {class: "key floor"}, "Rate-limit floor"));
  const table = h("table", {class: "data"},
    h("caption", {}, "Recent runs"),
    h("thead", {}, h("tr", {}, ["Run", "Status", "Kind", "Sent", "Rejected", "Removed", "Duration", "Floor"]
      .map(title => h("th", {scope: "col"}, title)))),
    h("tbody", {}, runs.map(run => h("tr", {},
      h("td", {}, h("a", {href: `#/exports/${encodeURIComponent(exportName)}/runs/${encodeURIComponent(run.run_id)}`}, run.run_id)),
      h("td", {}, run.status), h("td", {}, run.dry_run ? "preview" : run.trigger),
      h("td", {}, number(run.counts?.sent)), h("td", {}, number(run.counts?.rejected)),
      h("td", {}, number(run.counts?.removed)), h("td", {}, seconds(run.duration_seconds)),
      h("td", {}, seconds(run.floor_seconds))))));
  const charts = finished.length ? [h("div", {class: "charts"}, rows, times), legend]
                                 : h("p", {}, "No finished run to chart yet (previews are not charted).");
  return h("div", {class: "history"}, charts, table);
}
