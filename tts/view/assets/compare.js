"use strict";
// Two configurations of one task, paired on the (problem, seed) runs both answered (what
// `tts report --compare` prints): accuracies, their difference with a paired bootstrap
// interval over problems, McNemar's exact test, and the problems where they disagree, each
// opening the two runs side by side.
(() => {
  const { el, link, pct, num } = TTS;
  const LIST = 100;

  function outcomes(c, matrix) { // problem -> seed -> "1" | "0" (answered runs only)
    const m = matrix[c.i], k = c.seeds.length, out = new Map();
    for (let j = 0; j < m.cells.length; j++) {
      const ch = m.cells[j];
      if (ch !== "1" && ch !== "0") continue;
      const i = m.start + Math.floor(j / k);
      if (!out.has(i)) out.set(i, new Map());
      out.get(i).set(c.seeds[j % k], ch === "1");
    }
    return out;
  }

  function paired(a, b, matrix) {
    const oa = outcomes(a, matrix), ob = outcomes(b, matrix);
    const pairs = [], perProblem = new Map();
    for (const [i, seeds] of oa) {
      const other = ob.get(i);
      if (!other) continue;
      for (const [s, ra] of seeds) {
        if (!other.has(s)) continue;
        const rb = other.get(s);
        pairs.push([i, s, ra, rb]);
        const d = perProblem.get(i) || [0, 0];
        d[0] += ra - rb; d[1] += 1;
        perProblem.set(i, d);
      }
    }
    if (!pairs.length) return null;
    const onlyA = pairs.filter(p => p[2] && !p[3]), onlyB = pairs.filter(p => p[3] && !p[2]);
    const diffs = [...perProblem.values()];
    const total = diffs.reduce((s, d) => s + d[0], 0) / pairs.length;
    return {
      pairs: pairs.length, problems: perProblem.size, onlyA, onlyB, difference: total,
      accA: pairs.filter(p => p[2]).length / pairs.length, accB: pairs.filter(p => p[3]).length / pairs.length,
      ci: bootstrap(diffs), p: mcnemar(onlyA.length, onlyB.length),
    };
  }

  // 95% percentile interval of the difference, resampling problems (seeded: the same page
  // always shows the same interval; it is not the report's numpy stream).
  function bootstrap(diffs, reps = 2000) {
    let s = 12345; // mulberry32
    const rand = () => {
      s = (s + 0x6D2B79F5) | 0;
      let t = Math.imul(s ^ (s >>> 15), 1 | s);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const out = [];
    for (let r = 0; r < reps; r++) {
      let d = 0, n = 0;
      for (let j = 0; j < diffs.length; j++) { const x = diffs[Math.floor(rand() * diffs.length)]; d += x[0]; n += x[1]; }
      out.push(d / n);
    }
    out.sort((x, y) => x - y);
    return [out[Math.floor(0.025 * reps)], out[Math.min(reps - 1, Math.floor(0.975 * reps))]];
  }

  // Two-sided exact McNemar p-value from the discordant counts (log space: large counts).
  function mcnemar(b, c) {
    const n = b + c;
    if (n === 0) return 1;
    const lf = [0];
    for (let i = 1; i <= n; i++) lf.push(lf[i - 1] + Math.log(i));
    let tail = 0;
    for (let i = 0; i <= Math.min(b, c); i++) tail += Math.exp(lf[n] - lf[i] - lf[n - i] - n * Math.LN2);
    return Math.min(1, 2 * tail);
  }

  async function render(meta, matrix) {
    const cs = meta.configs;
    const a = cs[TTS.intParam("a") ?? 0];
    const sameTask = cs.filter(c => a && c.task === a.task && c.i !== a.i);
    let b = cs[TTS.intParam("b") ?? -1];
    if (!b || b.task !== a.task || b.i === a.i) b = sameTask[0];
    const rerender = params => { TTS.setParams(params); render(meta, matrix).catch(TTS.fail); };
    const pick = [
      el("label", {}, "A ", TTS.select(cs.map(c => [c.i, c.task + " · " + c.label]), a ? a.i : "", v => rerender({ a: v, b: null }), { id: "f-a" })),
      el("label", {}, "B ", TTS.select(sameTask.map(c => [c.i, c.task + " · " + c.label]), b ? b.i : "", v => rerender({ b: v }), { id: "f-b" })),
    ];
    if (!a || !b) return TTS.main(el("h1", {}, "Compare"), el("div", { class: "filters" }, pick),
      el("p", { class: "note" }, "a comparison needs two configurations of the same task"));
    const r = paired(a, b, matrix);
    if (!r) return TTS.main(el("h1", {}, "Compare"), el("div", { class: "filters" }, pick),
      el("p", { class: "note" }, "the two configurations share no answered (problem, seed) runs"));
    const ids = new Map();
    const pages = [...new Set([...r.onlyA, ...r.onlyB].slice(0, 2 * LIST).map(p => Math.floor(p[0] / meta.page)))];
    (await Promise.all(pages.map(k => TTS.load("list/" + k)))).flat().forEach(p => ids.set(p.i, p.id));
    const list = (rows, title, id) => el("div", { class: "half" }, el("h3", {}, title + " (" + rows.length + ")"),
      el("ol", { id }, rows.slice(0, LIST).map(([i, s]) => el("li", {},
        el("a", { href: link("problem", { p: i, a: a.i + ":" + s, b: b.i + ":" + s }) }, String(ids.get(i) ?? i)),
        " seed " + s))),
      rows.length > LIST ? el("p", { class: "note" }, "first " + LIST + " shown") : null);
    TTS.main(
      el("h1", {}, "Compare"),
      el("div", { class: "filters" }, pick),
      el("table", { class: "grid stats", id: "paired" }, el("tbody", {},
        [["A", a.label], ["B", b.label], ["paired runs (problem, seed)", r.pairs], ["problems", r.problems],
          ["accuracy A", pct(r.accA)], ["accuracy B", pct(r.accB)],
          ["A − B", pct(r.difference) + " [" + pct(r.ci[0]) + ", " + pct(r.ci[1]) + "] (paired bootstrap over problems)"],
          ["only A right", r.onlyA.length], ["only B right", r.onlyB.length],
          ["McNemar exact p", num(r.p)]].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))))),
      el("div", { class: "pair" }, list(r.onlyA, "A right, B wrong", "only-a"), list(r.onlyB, "B right, A wrong", "only-b")));
  }

  Promise.all([TTS.load("meta"), TTS.load("matrix")])
    .then(([meta, matrix]) => { TTS.header(meta, "compare"); return render(meta, matrix); })
    .catch(TTS.fail);
})();
