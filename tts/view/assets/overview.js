"use strict";
// The overview: the report's table (filterable by task / strategy / n, sortable), accuracy
// against cost per task, and each task's least cost-of-pass.
(() => {
  const { el, svg, num, pct, link } = TTS;
  const COLS = [
    ["task", "task"], ["label", "configuration"], ["source", "source"], ["seeds", "seeds"], ["records", "records"],
    ["failed", "failed"], ["accuracy", "accuracy (95% CI)"], ["gen_tokens", "gen tokens"],
    ["completion_tokens", "completion"], ["verifier_tokens", "verifier tokens"], ["flops", "FLOPs"],
    ["wall_seconds", "wall s"], ["cop_tokens", "cost-of-pass (tokens)"], ["cop_flops", "cost-of-pass (FLOPs)"],
    ["cop_usd", "cost-of-pass ($)"],
  ];
  let sortKey = null, sortDir = 1, x = "gen_tokens";

  function value(c, k) {
    return k in c.row ? c.row[k] : c[k];
  }

  function render(meta) {
    const configs = TTS.filtered(meta);
    if (sortKey) {
      configs.sort((a, b) => {
        const va = value(a, sortKey), vb = value(b, sortKey);
        return (va === vb ? 0 : va === null ? 1 : vb === null ? -1 : va < vb ? -1 : 1) * sortDir;
      });
    }
    const usd = meta.configs.some(c => c.row.cop_usd !== null && c.row.cop_usd !== undefined);
    const cols = COLS.filter(([k]) => usd || k !== "cop_usd");
    const head = el("tr", {}, cols.map(([k, label]) => el("th", {
      class: "sortable" + (sortKey === k ? (sortDir > 0 ? " asc" : " desc") : ""),
      onclick: () => { sortDir = sortKey === k ? -sortDir : 1; sortKey = k; render(meta); },
    }, label)));
    const body = configs.map(c => el("tr", { "data-config": c.i },
      cols.map(([k]) => {
        const r = c.row;
        if (k === "label") return el("td", { class: "label" }, el("a", { href: link("problems", { c: c.i }) }, c.label),
          el("div", { class: "hash" }, c.hash));
        if (k === "accuracy") return el("td", { class: "num" }, pct(r.accuracy),
          el("span", { class: "ci" }, " [" + pct(r.ci_low) + ", " + pct(r.ci_high) + "]"));
        const v = value(c, k);
        return el("td", { class: typeof v === "number" ? "num" : "" }, typeof v === "number" ? num(v) : v);
      })));
    const table = el("table", { class: "grid", id: "overview" }, el("thead", {}, head), el("tbody", {}, body));
    const axis = TTS.select([["gen_tokens", "generator tokens"], ["completion_tokens", "generated tokens"],
      ["flops", "FLOPs"]], x, v => { x = v; render(meta); }, { id: "f-x" });
    const tasks = [...new Set(configs.map(c => c.task))];
    TTS.main(
      el("h1", {}, meta.title),
      el("p", { class: "note" }, meta.records.toLocaleString("en-US") + " problem-runs of " + meta.problems.toLocaleString("en-US")
        + " problems under " + meta.configs.length + " configurations; details (traces, trees) stored for "
        + meta.details.toLocaleString("en-US") + ". Built " + meta.built + " from " + meta.source + "."),
      TTS.filters(meta, () => render(meta)),
      el("p", { class: "count", id: "shown" }, configs.length + " of " + meta.configs.length + " configurations"),
      el("div", { class: "scroll" }, table),
      el("h2", {}, "Accuracy against cost ", axis),
      el("div", { class: "plots" }, tasks.map(t => plot(t, configs.filter(c => c.task === t), x))),
      el("h2", {}, "Least cost-of-pass per task"),
      el("ul", {}, Object.entries(meta.frontier).filter(([t]) => tasks.includes(t)).map(([t, cols]) =>
        el("li", {}, el("b", {}, t), ": ", Object.entries(cols).map(([col, [v, who]]) =>
          el("span", { class: "frontier" }, col.replace("cop_", "") + " " + num(v) + " (" + who + ")  "))))));
  }

  // Accuracy (with its interval) against x, one line per curve (n along it), Pareto frontier dashed.
  function plot(task, configs, x) {
    const W = 560, H = 320, L = 56, R = 16, T = 24, B = 44;
    const pts = configs.filter(c => c.row.records > 0 && c.row[x] > 0);
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", "data-task": task });
    g.appendChild(svg("text", { x: L, y: 16, class: "title" }, task));
    if (!pts.length) { g.appendChild(svg("text", { x: L, y: H / 2 }, "nothing to plot")); return g; }
    const xs = pts.map(c => c.row[x]);
    let lo = Math.log10(Math.min(...xs)), hi = Math.log10(Math.max(...xs));
    if (hi - lo < 0.2) { lo -= 0.1; hi += 0.1; }
    const px = v => L + (Math.log10(v) - lo) / (hi - lo) * (W - L - R);
    const py = a => T + (1 - a) * (H - T - B);
    for (let a = 0; a <= 1.0001; a += 0.25) {
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: py(a), y2: py(a), class: "gridline" }));
      g.appendChild(svg("text", { x: L - 6, y: py(a) + 4, class: "tick", "text-anchor": "end" }, pct(a)));
    }
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
      g.appendChild(svg("line", { x1: px(10 ** e), x2: px(10 ** e), y1: T, y2: H - B, class: "gridline" }));
      g.appendChild(svg("text", { x: px(10 ** e), y: H - B + 16, class: "tick", "text-anchor": "middle" }, num(10 ** e)));
    }
    g.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 8, class: "axis", "text-anchor": "middle" },
      { gen_tokens: "generator tokens per problem (log)", completion_tokens: "generated tokens per problem (log)",
        flops: "FLOPs per problem (log)" }[x]));
    const curves = new Map();
    for (const c of pts) { if (!curves.has(c.curve)) curves.set(c.curve, []); curves.get(c.curve).push(c); }
    let k = 0;
    for (const [name, cs] of curves) {
      cs.sort((a, b) => a.row[x] - b.row[x]);
      const color = `hsl(${(k++ * 137) % 360} 65% 42%)`;
      g.appendChild(svg("polyline", { points: cs.map(c => px(c.row[x]) + "," + py(c.row.accuracy)).join(" "),
        class: "curve", stroke: color }));
      for (const c of cs) {
        g.appendChild(svg("line", { x1: px(c.row[x]), x2: px(c.row[x]), y1: py(c.row.ci_low), y2: py(c.row.ci_high),
          stroke: color, class: "ci" }));
        const dot = svg("circle", { cx: px(c.row[x]), cy: py(c.row.accuracy), r: 4, fill: color, class: "point" });
        dot.addEventListener("mousemove", e => TTS.tip(e, [c.label, "accuracy " + pct(c.row.accuracy) + " [" +
          pct(c.row.ci_low) + ", " + pct(c.row.ci_high) + "]", x + " " + num(c.row[x]), "records " + c.row.records]));
        dot.addEventListener("mouseleave", e => TTS.tip(e, null));
        g.appendChild(dot);
        if (c.n !== null) g.appendChild(svg("text", { x: px(c.row[x]) + 5, y: py(c.row.accuracy) - 5, class: "tick" }, "n=" + c.n));
      }
      g.appendChild(svg("text", { x: W - R - 4, y: T + 12 * k, class: "legend", fill: color, "text-anchor": "end" }, name));
    }
    const front = pareto(pts.map(c => [c.row[x], c.row.accuracy]));
    if (front.length > 1) {
      g.appendChild(svg("polyline", { points: front.map(i => px(pts[i].row[x]) + "," + py(pts[i].row.accuracy)).join(" "),
        class: "frontier" }));
    }
    return g;
  }

  function pareto(points) {
    const order = points.map((_, i) => i).sort((a, b) => points[a][0] - points[b][0] || points[b][1] - points[a][1]);
    let best = -Infinity; const out = [];
    for (const i of order) if (points[i][1] > best) { out.push(i); best = points[i][1]; }
    return out;
  }

  TTS.load("meta").then(meta => { TTS.header(meta, "overview"); render(meta); }).catch(TTS.fail);
})();
