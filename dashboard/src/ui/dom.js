/**
 * Tiny DOM helpers.  Text always goes in as text (``textContent``), never as
 * HTML: previews and reasons come from outside.
 */

/** Create an element: ``h("p", {class: "x", dataset: {a: "1"}}, "text", child)``. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** The element with ``id`` (throws if the page is missing it: a build error, not a runtime one). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
}

/** Set ``el.textContent`` only when it differs (no needless mutations for screen readers). */
export function setText(el, text) {
  const value = text ?? "";
  if (el.textContent !== value) el.textContent = value;
}

/** Set an attribute only when it differs. */
export function setAttr(el, name, value) {
  const text = String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

/**
 * Make ``list``'s children exactly ``elements`` (in order) while moving as
 * few nodes as possible: nodes that stay are never detached, so a focused
 * row keeps its focus when new rows arrive or old ones drop off.
 */
export function reconcileChildren(list, elements) {
  const wanted = new Set(elements);
  for (const child of [...list.children]) {
    if (!wanted.has(child)) child.remove();
  }
  let cursor = list.firstElementChild;
  for (const el of elements) {
    if (el === cursor) {
      cursor = cursor.nextElementSibling;
    } else {
      list.insertBefore(el, cursor);
    }
  }
}
