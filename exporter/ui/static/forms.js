// Connections and exports set up in forms, in the product's order, through the management
// API. Its validation messages appear beside the field they concern; a key is write-only
// here too: the form never shows one, and leaving it empty keeps the stored key.

import {api, ApiError, segment} from "./api.js";
import {h, say, when} from "./dom.js";

function field(id, label, control, help) {
  const error = h("p", {class: "field-error", id: `error-${id}`, hidden: true});
  control.setAttribute("id", `field-${id}`);
  control.setAttribute("aria-describedby", `error-${id}${help ? ` help-${id}` : ""}`);
  return h("div", {class: "field", "data-field": id}, h("label", {for: `field-${id}`}, label), control,
           help ? h("p", {class: "help", id: `help-${id}`}, help) : null, error);
}

function showProblems(form, error) {
  for (const node of form.querySelectorAll(".field-error")) { node.hidden = true; node.textContent = ""; }
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  const general = form.querySelector(".form-error");
  general.textContent = "";
  const problems = error instanceof ApiError && error.problems.length ? error.problems
                                                                      : [{field: null, message: error.message}];
  let first = null;
  for (const problem of problems) {
    const slot = problem.field && form.querySelector(`#error-${CSS.escape(problem.field)}`);
    if (slot) {
      slot.hidden = false;
      slot.textContent = slot.textContent ? `${slot.textContent} ${problem.message}` : problem.message;
      const control = form.querySelector(`#field-${CSS.escape(problem.field)}`);
      if (control) { control.setAttribute("aria-invalid", "true"); first = first || control; }
    } else {
      general.textContent += (general.textContent ? " " : "") + (typeof problem === "string" ? problem : problem.message);
    }
  }
  say("The form has problems; each is shown beside its field.");
  (first || general).focus();
}

function formShell(title, fields, onsubmit, submitLabel) {
  const form = h("form", {novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try { await onsubmit(form); } catch (error) { showProblems(form, error); } finally { button.disabled = false; }
  }}, h("p", {class: "form-error error", tabindex: "-1", role: "alert"}), fields,
     h("button", {type: "submit", class: "primary"}, submitLabel));
  return h("section", {}, h("h1", {}, title), form);
}

export async function connectionsPage(context) {
  const {data} = await api("GET", "/connections");
  return h("section", {}, h("h1", {}, "Connections"),
    h("p", {}, h("a", {href: "#/connections/new", class: "button"}, "New connection")),
    h("table", {class: "data"}, h("thead", {}, h("tr", {}, ["Connection", "Display name", "Who may use it", "Key",
      "Privacy agreed"].map(title => h("th", {scope: "col"}, title)))),
      h("tbody", {}, data.connections.map(item => h("tr", {},
        h("th", {scope: "row"}, h("a", {href: `#/connections/${segment(item.name)}`}, item.name)),
        h("td", {}, item.display_name),
        h("td", {}, item.users.length ? `${item.users.length} user(s) or group(s), and administrators` : "administrators only"),
        h("td", {}, item.key), h("td", {}, item.privacy ? when(item.privacy.acknowledged_at) : "–"))))));
}

const NOTICE = "Exporting a segment to Klaviyo sends its customers' data (email addresses, phone numbers, names and "
  + "every column you map) outside this app and your Azure compliance boundary, to Klaviyo, a third party that "
  + "processes it under its own terms.";

export async function connectionForm(context, name) {
  let item = {users: []}, etag = null;
  if (name) ({data: item, etag} = await api("GET", `/connections/${segment(name)}`));
  const nameInput = h("input", {type: "text", required: true, value: name || "", autocomplete: "off"});
  if (name) nameInput.readOnly = true;
  const display = h("input", {type: "text", value: item.display_name || "", autocomplete: "off"});
  const users = h("textarea", {rows: 3}, (item.users || []).join("\n"));
  const key = h("input", {type: "password", autocomplete: "new-password", spellcheck: "false"});
  const agree = h("input", {type: "checkbox"});
  const steps = [
    field("name", "Name (letters, digits and '-')", nameInput),
    field("display_name", "1. Display name", display),
    field("users", "2. Who may use it", users, "Microsoft Entra object ids of people or groups, one a line; "
          + "empty: administrators only."),
    field("api_key", "3. Klaviyo private API key", key, name ? "Leave empty to keep the stored key; it is never shown."
          : "Checked with Klaviyo before it is saved, then kept in Key Vault; it is never shown again."),
    h("div", {class: "notice"}, h("p", {}, NOTICE)),
    field("privacy_acknowledged", "4. I agree: this data may leave the compliance boundary for Klaviyo", agree),
  ];
  return formShell(name ? `Connection ${name}` : "New connection", steps, async () => {
    const body = {display_name: display.value, users: users.value.split(/\s+/).filter(Boolean)};
    if (agree.checked || !name) body.privacy_acknowledged = agree.checked;  // a change may keep the agreement given
    if (key.value) body.api_key = key.value;
    const answer = await api("PUT", `/connections/${segment(nameInput.value)}`, {body, etag});
    key.value = "";
    say(`Connection ${answer.data.name} saved.`);
    context.go("#/connections");
  }, "Save connection");
}

const MODES = [["add", "add: only add and update members"], ["mirror", "mirror: also remove members who left"]];

function mappingRow(target = "", column = "") {
  const row = h("div", {class: "mapping-row"},
    h("input", {type: "text", value: target, "aria-label": "Klaviyo field (e.g. first_name, properties.tier)",
                class: "target"}),
    h("span", {"aria-hidden": "true"}, "←"),
    h("input", {type: "text", value: column, "aria-label": "Segment column", class: "column"}),
    h("button", {type: "button", class: "small", onclick: () => row.remove()}, "Remove"));
  return row;
}

export async function exportForm(context, name) {
  let item = {mapping: {email: ""}, mode: "add", enabled: true}, etag = null;
  if (name) ({data: item, etag} = await api("GET", `/exports/${segment(name)}`));
  const nameInput = h("input", {type: "text", value: name || "", autocomplete: "off"});
  if (name) nameInput.readOnly = true;
  const connection = h("select", {}, context.me.connections.map(c =>
    h("option", {value: c.name, selected: c.name === item.connection}, `${c.display_name} (${c.name})`)));
  const list = h("input", {type: "text", value: item.list_id || "", autocomplete: "off"});
  const source = h("input", {type: "text", value: item.source || "", autocomplete: "off"});
  const email = h("input", {type: "text", value: item.mapping?.email || "", autocomplete: "off"});
  const rows = h("div", {class: "mapping-rows"}, Object.entries(item.mapping || {})
    .filter(([target]) => target !== "email").map(([target, column]) => mappingRow(target, column)));
  const add = h("button", {type: "button", class: "small", onclick: () => rows.append(mappingRow())}, "Add a field");
  const mode = h("select", {}, MODES.map(([value, label]) => h("option", {value, selected: value === item.mode}, label)));
  const fullEvery = h("input", {type: "number", min: 0, step: 1, value: item.full_every ?? 0});
  const guard = h("input", {type: "number", min: 0, max: 1, step: 0.05, value: item.max_remove_fraction ?? 0.5});
  const enabled = h("input", {type: "checkbox", checked: item.enabled !== false});
  const mapping = h("div", {}, rows, add);
  mapping.setAttribute("role", "group");
  const steps = [
    field("name", "Name", nameInput),
    field("connection", "Connection", connection),
    field("list_id", "Klaviyo list id", list, "Lists & segments → the list → Settings: List ID."),
    field("source", "Source in the segments container", source, "A file, or a folder ending in '/'."),
    field("mapping", "Email column", email),
    h("fieldset", {}, h("legend", {}, "More fields"), mapping),
    field("mode", "Mode", mode),
    field("full_every", "Resend everyone every Nth run (0: never by itself)", fullEvery),
    field("max_remove_fraction", "Mirror guard: most of the list one run may remove (0–1)", guard),
    field("enabled", "Enabled (runs with each refresh)", enabled),
  ];
  return formShell(name ? `Change export ${name}` : "New export", steps, async () => {
    const fields = {email: email.value};
    for (const row of rows.querySelectorAll(".mapping-row")) {
      const target = row.querySelector(".target").value.trim();
      if (target) fields[target] = row.querySelector(".column").value;
    }
    const body = {...item, connection: connection.value, list_id: list.value, source: source.value, mapping: fields,
                  mode: mode.value, full_every: Number(fullEvery.value), max_remove_fraction: Number(guard.value),
                  enabled: enabled.checked};
    delete body.name;
    const answer = await api("PUT", `/exports/${segment(nameInput.value)}`, {body, etag});
    for (const warning of answer.data.warnings || []) say(warning);
    context.go(`#/exports/${segment(nameInput.value)}`);
  }, "Save export");
}
