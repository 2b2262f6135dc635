"use strict";
// What every page of `tts view` shares: loading data files, building the DOM, formatting.
//
// Data files are scripts (`TTS.put(NAME, JSON)`), loaded with <script src>, because a page
// opened from file:// may not fetch() in Chromium. Model and problem text is untrusted: data
// only ever becomes text nodes (`el` and `svg` turn strings into text, set attributes with
// setAttribute, and links are built from the site's own page names and numbers), never markup.

const TTS = (() => {
  const store = new Map();
  const waiting = new Map(); // name -> [{resolve, reject}]

  function put(name, value) {
    store.set(name, value);
    for (const w of waiting.get(name) || []) w.resolve(value);
    waiting.delete(name);
  }

  function load(name) {
    if (store.has(name)) return Promise.resolve(store.get(name));
    return new Promise((resolve, reject) => {
      const first = !waiting.has(name);
      if (first) waiting.set(name, []);
      waiting.get(name).push({ resolve, reject });
      if (!first) return;
      const s = document.createElement("script");
      s.src = "data/" + name + ".js";
      s.onerror = () => {
        for (const w of waiting.get(name) || []) w.reject(new Error("cannot load data/" + name + ".js"));
        waiting.delete(name);
      };
      document.head.appendChild(s);
    });
  }

  // el("div", {class: "x", title: t, onclick: f}, "text", child, [more]) — strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    setProps(node, props);
    append(node, children);
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, props, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setProps(node, props);
    append(node, children);
    return node;
  }

  function setProps(node, props) {
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "href") node.setAttribute("href", safeHref(v));
      else node.setAttribute(k, String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  // Links only ever point at the site's own pages.
  function safeHref(h) {
    const s = String(h);
    return /^(index|problems|problem|compare)\.html(\?[^:]*)?(#.*)?$/.test(s) ? s : "#";
  }

  function link(page, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const qs = q.toString();
    return page + ".html" + (qs ? "?" + qs : "");
  }

  function param(name) { return new URLSearchParams(location.search).get(name); }
  function intParam(name) {
    const v = param(name);
    return v !== null && /^\d+$/.test(v) ? parseInt(v, 10) : null;
  }
  function setParams(params) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined || v === null || v === "") q.delete(k); else q.set(k, v);
    }
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  }

  function num(x, digits = 3) {
    if (x === null || x === undefined || (typeof x === "number" && !isFinite(x))) return x === Infinity ? "∞" : "–";
    if (typeof x !== "number") return String(x);
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
    if (Number.isInteger(x)) return x.toLocaleString("en-US");
    return a >= 100 ? x.toFixed(1) : x.toPrecision(digits);
  }
  function pct(x) { return x === null || x === undefined || !isFinite(x) ? "–" : (100 * x).toFixed(1) + "%"; }

  function header(meta, title) {
    const top = document.getElementById("top");
    top.replaceChildren(
      el("nav", {},
        el("a", { href: "index.html", class: "brand" }, "tts view"),
        el("a", { href: "index.html" }, "overview"),
        el("a", { href: "problems.html" }, "problems"),
        el("a", { href: "compare.html" }, "compare"),
        el("span", { class: "source" }, meta ? meta.title + " · " + meta.records.toLocaleString("en-US") + " problem-runs" : "")));
    document.title = title + (meta ? " · " + meta.title : "") + " · tts view";
  }

  function main(...children) {
    const m = document.getElementById("main");
    m.replaceChildren(...children.flat(Infinity).filter(c => c !== null && c !== undefined));
    return m;
  }

  function fail(err) {
    main(el("p", { class: "error" }, "error: " + (err && err.message ? err.message : String(err))));
  }

  // A tooltip of plain text lines near the pointer.
  function tip(evt, lines) {
    const t = document.getElementById("tip");
    if (!lines) { t.hidden = true; return; }
    t.replaceChildren(...lines.map((l, i) => el(i === 0 ? "b" : "div", {}, l)));
    t.hidden = false;
    const x = Math.min(evt.clientX + 14, window.innerWidth - t.offsetWidth - 8);
    const y = Math.min(evt.clientY + 14, window.innerHeight - t.offsetHeight - 8);
    t.style.left = Math.max(4, x) + "px";
    t.style.top = Math.max(4, y) + "px";
  }

  function select(options, value, onchange, props) {
    const s = el("select", Object.assign({ onchange: () => onchange(s.value) }, props || {}),
      options.map(([v, label]) => el("option", { value: v }, label)));
    s.value = value === null || value === undefined ? "" : String(value);
    return s;
  }

  // The configurations the task / strategy / n / text filters in the URL let through.
  function filtered(meta) {
    const task = param("task") || "", strategy = param("strategy") || "", n = param("n") || "";
    const text = (param("q") || "").toLowerCase();
    return meta.configs.filter(c => (!task || c.task === task) && (!strategy || c.strategy === strategy)
      && (!n || String(c.n) === n) && (!text || c.label.toLowerCase().includes(text)));
  }

  function filters(meta, onchange) {
    const uniq = xs => [...new Set(xs)];
    const opt = (xs, all) => [["", all], ...xs.map(x => [String(x), String(x)])];
    const change = key => v => { setParams({ [key]: v }); onchange(); };
    const text = el("input", { type: "search", placeholder: "filter configurations", value: param("q") || "" });
    text.addEventListener("input", () => { setParams({ q: text.value }); onchange(); });
    return el("div", { class: "filters" },
      el("label", {}, "task ", select(opt(uniq(meta.configs.map(c => c.task)), "all"), param("task"), change("task"), { id: "f-task" })),
      el("label", {}, "strategy ", select(opt(uniq(meta.configs.map(c => c.strategy)), "all"), param("strategy"), change("strategy"), { id: "f-strategy" })),
      el("label", {}, "n ", select(opt(uniq(meta.configs.map(c => c.n)).filter(x => x !== null).sort((a, b) => a - b), "all"), param("n"), change("n"), { id: "f-n" })),
      text);
  }

  // Outcome character of the matrix: 1 right, 0 wrong, f failed, . no record.
  function mark(ch) {
    return { "1": ["ok", "✓", "right"], "0": ["bad", "✗", "wrong"], f: ["fail", "!", "failed (retried by a resume)"] }[ch]
      || ["none", "·", "no record"];
  }

  return { put, load, el, svg, link, param, intParam, setParams, num, pct, header, main, fail, tip, select,
           filtered, filters, mark };
})();
