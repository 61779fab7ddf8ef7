// Building the page without ever parsing data as HTML: every value (an email, a column or
// file name, an error message) becomes a text node or an attribute value, never markup.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.setAttribute("class", value);
    else if (name === "value" && "value" in element) element.value = String(value);
    else if (name === "checked") element.checked = Boolean(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let navigated = false;

// A new view takes the focus to its heading (a screen reader announces where you are), except
// the first one: a freshly loaded page starts at its top, where the skip link is.
export function mount(view) {
  const main = document.getElementById("main");
  main.replaceChildren(view);
  const heading = main.querySelector("h1");
  if (heading) heading.setAttribute("tabindex", "-1");
  if (heading && navigated) heading.focus();
  navigated = true;
}

export function say(message) {
  document.getElementById("status").textContent = message;
}

export function number(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en");
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString("en-GB", {dateStyle: "medium", timeStyle: "short"});
}

export function seconds(value) {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(1)} s`;
}

export const ACTIVE = ["queued", "waiting", "running", "continuing"];

export function badge(status) {
  return h("span", {class: `badge badge-${/^[a-z]+$/.test(status || "") ? status : "none"}`}, status || "never run");
}
