"use strict";
// One problem: its question and gold answer, every run of it (configuration x seed) to pick
// from, and one run (?a=CONFIG:SEED) or two side by side (&b=CONFIG:SEED).
(() => {
  const { el, link, num } = TTS;
  const V = TTSViews;

  function parseRun(v) {
    const m = /^(\d+):(-?\d+)$/.exec(v || "");
    return m ? [parseInt(m[1], 10), parseInt(m[2], 10)] : null;
  }

  async function render(meta) {
    const i = TTS.intParam("p") ?? 0;
    let p;
    try { p = await TTS.load("p/" + i); } catch (e) { throw new Error("no problem " + i + " in this site"); }
    TTS.header(meta, "problem " + p.id);
    const runs = p.runs;
    const a = parseRun(TTS.param("a")) || (runs.length ? [runs[0][0], runs[0][1]] : null);
    const b = parseRun(TTS.param("b"));
    const code = r => r ? r[0] + ":" + r[1] : null;
    const byConfig = new Map();
    for (const [c, s, ch] of runs) { if (!byConfig.has(c)) byConfig.set(c, []); byConfig.get(c).push([s, ch]); }
    const chooser = el("table", { class: "grid runs", id: "runs" }, el("tbody", {}, [...byConfig].map(([c, seeds]) => {
      const cfg = meta.configs[c];
      return el("tr", {}, el("td", { class: "label" }, cfg ? cfg.label : "configuration " + c),
        el("td", {}, seeds.map(([s, ch]) => {
          const [cls, sym, what] = TTS.mark(ch);
          const here = code(a) === c + ":" + s || code(b) === c + ":" + s;
          return el("span", { class: "runpick" + (here ? " here" : "") },
            el("a", { class: "cell " + cls, title: "seed " + s + ": " + what + " (show)", href: link("problem", { p: i, a: c + ":" + s, b: code(b) }) },
              sym + " seed " + s),
            el("a", { class: "vs", title: "show beside the run on the left", href: link("problem", { p: i, a: code(a), b: c + ":" + s }) }, "B"));
        })));
    })));
    const panes = el("div", { class: b ? "pair" : "single" });
    TTS.main(
      el("div", { class: "pnav" },
        i > 0 ? el("a", { href: link("problem", { p: i - 1 }) }, "‹ previous problem") : null, " ",
        i + 1 < meta.problems ? el("a", { href: link("problem", { p: i + 1 }) }, "next problem ›") : null),
      el("h1", {}, "Problem ", el("span", { id: "problem-id" }, p.id)),
      el("p", { class: "facts" }, el("span", {}, "task " + p.task), el("span", {}, "gold answer "), el("code", { id: "gold" }, p.gold ?? "unknown")),
      el("pre", { class: "question", id: "question" }, p.question ?? "(the question is stored with the run details; this run has none)"),
      el("h2", {}, "Runs"), chooser,
      panes);
    const shown = [a, b].filter(Boolean);
    if (!shown.length) { panes.appendChild(el("p", { class: "note" }, "no runs of this problem")); return; }
    const built = await Promise.all(shown.map(r => pane(meta, p, r).catch(e => el("p", { class: "error" }, e.message))));
    panes.replaceChildren(...built);
  }

  async function pane(meta, p, [c, seed]) {
    const cfg = meta.configs[c];
    const entries = await TTS.load("r/" + p.i + "_" + c);
    const run = entries.find(e => e.seed === seed);
    if (!cfg || !run) throw new Error("no run of configuration " + c + " with seed " + seed + " for this problem");
    const rec = run.record, d = run.details;
    const params = (cfg.spec && cfg.spec.params) || {};
    const ctx = { chosen: rec.answer ?? null, wait: cfg.strategy === "budget_forcing" ? params.wait : null };
    const outcome = rec.status === "failed" ? ["fail", "failed: " + (rec.error || "")]
      : rec.correct === true ? ["ok", "right"] : rec.correct === false ? ["bad", "wrong"] : ["none", "not graded"];
    const facts = [["stopped by", rec.stopped_by], ["pass@n", rec.pass_at_n], ["maj@n", rec.maj_at_n], ["samples", rec.n_samples],
      ["grading failures", rec.grading_failures], ["model", rec.model]].filter(([, v]) => v !== undefined && v !== null);
    return el("div", { class: "pane", "data-config": c, "data-seed": seed },
      el("h2", {}, cfg.label, el("span", { class: "seed" }, " seed " + seed)),
      el("p", { class: "hash" }, cfg.task + " · " + cfg.source + " · " + cfg.hash),
      el("p", { class: "outcome " + outcome[0] }, "answer ", el("code", { class: "chosen-answer" }, rec.answer ?? "none"), " · " + outcome[1]),
      el("p", { class: "facts" }, facts.map(([k, v]) => el("span", {}, el("i", {}, k + " "), typeof v === "number" ? num(v) : String(v)))),
      d ? null : el("p", { class: "note" }, "no details stored for this run (a failed run, or results written before details were kept): "
        + "answers and scores only"),
      d && d.error ? el("p", { class: "error" }, d.error) : null,
      V.votes((rec.telemetry || {}).votes, rec.answer),
      V.tree(run), V.deepconf(run), V.deepprune(run), V.particles(run), V.forcing(run, ctx), V.firstFinish(run),
      d ? V.traces(run, ctx) : answersOnly(rec),
      V.usage(rec.usage),
      V.raw(run));
  }

  function answersOnly(rec) {
    if (!rec.answers) return null;
    return el("section", { class: "view" }, el("h3", {}, "Samples (" + rec.answers.length + ")"),
      el("ol", {}, rec.answers.map((a, k) => el("li", {}, el("code", {}, a ?? "none"), " score " + num((rec.scores || [])[k])))));
  }

  TTS.load("meta").then(render).catch(TTS.fail);
})();
