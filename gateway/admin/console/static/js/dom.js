// Builds DOM nodes from data without ever parsing data as HTML: text goes in as text nodes and
// attribute values through setAttribute, so a tenant named "<script>" stays a string.
const SVG_NS = "http://www.w3.org/2000/svg";

function assign(node, props) {
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (name === "value" || name === "checked") {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  assign(node, props);
  return append(node, children);
}

export function svg(tag, props = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  assign(node, props);
  return append(node, children);
}

export function replaceChildren(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

let lastId = 0;

// Unique ids tie labels and descriptions to their inputs.
export function uniqueId(prefix) {
  lastId += 1;
  return `${prefix}-${lastId}`;
}
