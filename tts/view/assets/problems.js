"use strict";
// The problem list: one row per problem, one column per configuration (each seed right, wrong,
// failed), filtered by outcome, paginated; list pages are loaded as they are shown.
(() => {
  const { el, link } = TTS;
  const ROWS = 50;
  const SHOW = [["", "all problems"], ["wrong", "wrong somewhere"], ["allwrong", "wrong everywhere"],
    ["disagree", "right and wrong"], ["failed", "with a failed run"]];

  // The shown configurations' outcome characters of problem i: [[config, chars], ...].
  function cellsOf(i, configs, matrix) {
    return configs.map(c => {
      const m = matrix[c.i], k = c.seeds.length, off = i - m.start;
      return [c, off >= 0 && off * k < m.cells.length ? m.cells.slice(off * k, off * k + k) : ""];
    });
  }

  function keep(show, cells) {
    const all = cells.map(([, s]) => s).join("");
    const right = all.includes("1"), wrong = all.includes("0");
    if (!/[01f]/.test(all)) return false;
    return !show || (show === "wrong" && wrong) || (show === "allwrong" && wrong && !right)
      || (show === "disagree" && wrong && right) || (show === "failed" && all.includes("f"));
  }

  async function render(meta, matrix) {
    let configs = TTS.filtered(meta);
    const only = TTS.intParam("c");
    if (only !== null && meta.configs[only]) configs = [meta.configs[only]];
    const show = TTS.param("show") || "";
    const search = (TTS.param("id") || "").trim();
    let ids = null;
    if (search) ids = await TTS.load("ids");
    const rows = [];
    for (let i = 0; i < meta.problems; i++) {
      if (ids && !String(ids[i]).includes(search)) continue;
      const cells = cellsOf(i, configs, matrix);
      if (keep(show, cells)) rows.push([i, cells]);
    }
    const pages = Math.max(1, Math.ceil(rows.length / ROWS));
    const page = Math.min(TTS.intParam("page") || 0, pages - 1);
    const shown = rows.slice(page * ROWS, page * ROWS + ROWS);
    const need = [...new Set(shown.map(([i]) => Math.floor(i / meta.page)))];
    const lists = await Promise.all(need.map(k => TTS.load("list/" + k)));
    const info = new Map();
    need.forEach((k, j) => lists[j].forEach(p => info.set(p.i, p)));

    const rerender = params => { TTS.setParams(params); render(meta, matrix).catch(TTS.fail); };
    const idBox = el("input", { type: "search", placeholder: "problem id contains", value: search, id: "f-id" });
    idBox.addEventListener("change", () => rerender({ id: idBox.value, page: null }));
    const nav = el("div", { class: "pager" },
      el("button", { disabled: page === 0 || null, onclick: () => rerender({ page: page - 1 }) }, "‹ prev"),
      " page " + (page + 1) + " of " + pages + " ",
      el("button", { disabled: page >= pages - 1 || null, onclick: () => rerender({ page: page + 1 }) }, "next ›"));
    const head = el("tr", {}, el("th", {}, "#"), el("th", {}, "problem"), el("th", {}, "gold"), el("th", {}, "question"),
      configs.map(c => el("th", { class: "config", title: c.label }, el("a", { href: link("problems", { c: c.i }) }, c.label))));
    const body = shown.map(([i, cells]) => {
      const p = info.get(i) || { id: "?", gold: null, q: "" };
      return el("tr", { class: "problem", "data-problem": i },
        el("td", { class: "num" }, i),
        el("td", {}, el("a", { href: link("problem", { p: i }) }, p.id)),
        el("td", { class: "gold" }, p.gold === null ? "–" : p.gold),
        el("td", { class: "question" }, p.q.length > 140 ? p.q.slice(0, 139) + "…" : p.q),
        cells.map(([c, s]) => el("td", { class: "cells" }, [...s].map((ch, j) => {
          const [cls, sym, what] = TTS.mark(ch);
          return el("a", { class: "cell " + cls, title: c.label + " seed " + c.seeds[j] + ": " + what,
            href: link("problem", { p: i, a: c.i + ":" + c.seeds[j] }) }, sym);
        }))));
    });
    TTS.main(
      el("h1", {}, "Problems"),
      TTS.filters(meta, () => rerender({ page: null, c: null })),
      el("div", { class: "filters" },
        el("label", {}, "show ", TTS.select(SHOW, show, v => rerender({ show: v, page: null }), { id: "f-show" })),
        idBox,
        only !== null ? el("button", { onclick: () => rerender({ c: null, page: null }) }, "all configurations") : null),
      el("p", { class: "count", id: "shown" }, rows.length + " problems · " + configs.length + " configurations"),
      nav,
      el("div", { class: "scroll" }, el("table", { class: "grid", id: "problems" }, el("thead", {}, head), el("tbody", {}, body))));
  }

  Promise.all([TTS.load("meta"), TTS.load("matrix")])
    .then(([meta, matrix]) => { TTS.header(meta, "problems"); return render(meta, matrix); })
    .catch(TTS.fail);
})();
