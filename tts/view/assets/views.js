"use strict";
// Views of one run: the vote tally, the usage breakdown, the traces, and what each strategy's
// telemetry shows best as a picture: the search tree (beam search, DVTS, A*, particle
// filtering), DeepConf's confidence against its threshold, DeepPrune's clusters, particle
// filtering's weights per step, budget forcing's Waits. Every string is data, set as text.
const TTSViews = (() => {
  const { el, svg, num, pct } = TTS;

  function section(title, id, ...body) {
    return el("section", { class: "view", id }, el("h3", {}, title), ...body);
  }

  // -- votes, usage ----------------------------------------------------------------------
  function votes(tally, chosen) {
    const rows = Object.entries(tally || {}).sort((a, b) => b[1] - a[1]);
    if (!rows.length) return null;
    const total = rows.reduce((s, [, w]) => s + w, 0) || 1;
    return section("Vote tally", "votes", el("table", { class: "votes" }, el("tbody", {}, rows.map(([answer, w]) => {
      const bar = el("span", { class: "bar" });
      bar.style.width = (100 * w / total).toFixed(1) + "%";
      return el("tr", { class: answer === chosen ? "chosen" : "" },
        el("td", { class: "answer" }, el("code", {}, answer), answer === chosen ? " ← chosen" : ""),
        el("td", { class: "num" }, num(w)), el("td", { class: "barcell" }, bar));
    }))));
  }

  function usage(u) {
    if (!u) return null;
    const think = u.thinking_tokens !== undefined;
    const rows = [
      ["generator", "prompt tokens", u.prompt_tokens, "of which cached " + num(u.cached_tokens)],
      ["", "completion tokens", u.completion_tokens, think ? "thinking " + num(u.thinking_tokens) + " · answer " + num(u.answer_tokens) : ""],
      ["", "calls", u.generator_calls, ""],
      ["", "FLOPs", u.generator_flops, ""],
      ["verifier", "tokens computed", u.verifier_tokens, "cached " + num(u.verifier_cached_tokens || 0)],
      ["", "calls", u.verifier_calls, ""],
      ["", "FLOPs", u.verifier_flops, ""],
      ["total", "tokens", u.total_tokens, "prompt + completion + verifier computed"],
      ["", "wall seconds", u.wall_seconds, ""],
    ];
    const known = new Set(["prompt_tokens", "cached_tokens", "completion_tokens", "thinking_tokens", "answer_tokens",
      "generator_calls", "generator_flops", "verifier_tokens", "verifier_cached_tokens", "verifier_calls",
      "verifier_flops", "total_tokens", "wall_seconds"]);
    for (const [k, v] of Object.entries(u)) if (!known.has(k)) rows.push(["", k.replace(/_/g, " "), v, ""]); // e.g. exec seconds
    return section("Usage", "usage", el("table", { class: "usage" }, el("tbody", {}, rows.map(([who, what, v, note]) =>
      el("tr", {}, el("th", {}, who), el("td", {}, what), el("td", { class: "num" }, num(v)), el("td", { class: "note" }, note))))));
  }

  // -- traces ----------------------------------------------------------------------------
  // `text` with every occurrence of `needle` in a <mark> (budget forcing's Waits).
  function marked(text, needle) {
    if (!needle) return [text];
    const out = [];
    let at = 0, k;
    while ((k = text.indexOf(needle, at)) >= 0) {
      out.push(text.slice(at, k), el("mark", { class: "wait" }, needle));
      at = k + needle.length;
    }
    out.push(text.slice(at));
    return out;
  }

  function part(value, text) { // a span [start, end] of the text, or the string itself
    return Array.isArray(value) ? text.slice(value[0], value[1]) : value;
  }

  function traces(run, ctx) {
    const d = run.details;
    if (!d || !d.traces) return null;
    const tel = run.record.telemetry || {};
    const voters = new Set((tel.voters || []).map(Number));
    const order = new Map((tel.finish_order || []).map((t, k) => [Number(t), k + 1]));
    const cluster = new Map();
    (tel.clusters || []).forEach((members, k) => members.forEach((t, j) => cluster.set(Number(t), [k, j === 0])));
    const cards = d.traces.map((t, i) => {
      const facts = [
        ["answer", t.answer === null ? "none" : t.answer, "answer"],
        ["score", num(t.score)],
        ["finish", t.finish + (t.stop_reason ? " (stop string " + JSON.stringify(t.stop_reason) + ")" : "")],
        ["tokens", t.tokens + (t.thinking_tokens !== undefined ? " (thinking " + t.thinking_tokens + ", answer " + (t.tokens - t.thinking_tokens) + ")" : "")],
      ];
      if (t.answer_from) facts.push(["answer from", t.answer_from]);
      if (t.stopped) facts.push(["stopped", "by " + t.stopped.rule + " at " + t.stopped.at_tokens + " tokens", "stopped"]);
      if (voters.size) facts.push(["vote", voters.has(i) ? "counted" : "not counted"]);
      if (order.has(i)) facts.push(["finished", "#" + order.get(i)]);
      if (cluster.has(i)) facts.push(["cluster", cluster.get(i)[0] + (cluster.get(i)[1] ? " (representative)" : " (member)")]);
      if (t.steps) facts.push(["step scores", t.steps.map(s => num(s[1])).join(" · ")]);
      const bodies = [];
      const text = t.text || "";
      if (t.parts && t.parts.thinking !== undefined) {
        const thinking = part(t.parts.thinking, text);
        const waits = ctx.wait ? thinking.split(ctx.wait).length - 1 : 0;
        bodies.push(el("details", { class: "thinking" }, el("summary", {}, "thinking (" + thinking.length + " characters"
          + (ctx.wait ? ", " + waits + " × " + JSON.stringify(ctx.wait) : "") + ")"), el("pre", {}, marked(thinking, ctx.wait))));
      }
      if (t.parts && t.parts.answer !== undefined) {
        const answer = part(t.parts.answer, text);
        bodies.push(el("details", { class: "answer-part", open: true }, el("summary", {}, "answer part (" + answer.length + " characters)"),
          el("pre", {}, answer)));
      } else if (t.parts) {
        bodies.push(el("p", { class: "note" }, "no answer part: the thinking never closed"));
      }
      if (!t.parts || t.parts.thinking === undefined) {
        bodies.push(el("details", { class: "text" }, el("summary", {}, "text (" + text.length + " characters)"),
          t.prefix ? el("pre", { class: "prefix" }, t.prefix) : null, el("pre", {}, text)));
      }
      const cls = ["trace", t.stopped ? "stopped" : "", voters.has(i) ? "voter" : "",
        ctx.chosen !== null && t.answer === ctx.chosen ? "agrees" : ""].join(" ");
      return el("div", { class: cls, "data-trace": i },
        el("div", { class: "facts" }, el("b", {}, "#" + i), facts.map(([k, v, c]) => el("span", { class: "fact " + (c || "") },
          el("i", {}, k + " "), c === "answer" ? el("code", {}, v) : v))),
        bodies);
    });
    const open = el("button", { onclick: () => cards.forEach(c => c.querySelectorAll("details").forEach(x => { x.open = true; })) }, "open all");
    return section("Traces (" + d.traces.length + ")", "traces", open, el("div", { class: "traces" }, cards));
  }

  // -- search tree -------------------------------------------------------------------------
  function tree(run) {
    const t = run.details && run.details.tree;
    if (!t || !t.nodes.length) return null;
    const nodes = new Map(t.nodes.map(n => [n.id, Object.assign({ kids: [] }, n)]));
    let root = null;
    for (const n of nodes.values()) {
      if (n.parent === null || !nodes.has(n.parent)) root = root || n; else nodes.get(n.parent).kids.push(n);
    }
    // the final paths: each returned trace ends at tree.paths[k]; the chosen one is the
    // best-scored trace with the run's answer (with none: the best-scored, as the search chose)
    const traces = (run.details.traces || []);
    const answer = run.record.answer ?? null;
    let chosen = null;
    t.paths.forEach((id, k) => {
      const tr = traces[k];
      if (tr && (tr.answer ?? null) === answer && (chosen === null || (tr.score ?? -Infinity) > (traces[chosen.k].score ?? -Infinity))) chosen = { id, k };
    });
    const onPath = new Set(), onChosen = new Set();
    const climb = (id, set) => { for (let n = nodes.get(id); n; n = nodes.get(n.parent)) set.add(n.id); };
    t.paths.forEach(id => climb(id, onPath));
    if (chosen) climb(chosen.id, onChosen);
    // layout: depth to the right, leaves one row each in depth-first order
    const labels = nodes.size <= 300; // short step labels beside the nodes of a small tree
    const DX = labels ? 120 : 88, DY = labels ? 22 : 15, PAD = 14;
    let row = 0, depth = 0;
    const place = (n, d) => {
      n.x = PAD + d * DX; depth = Math.max(depth, d);
      if (!n.kids.length) { n.y = PAD + row++ * DY; return; }
      n.kids.forEach(k => place(k, d + 1));
      n.y = (n.kids[0].y + n.kids[n.kids.length - 1].y) / 2;
    };
    place(root, 0);
    const W = PAD * 2 + depth * DX + (labels ? DX : 0), H = PAD * 2 + Math.max(0, row - 1) * DY;
    const g = svg("svg", { class: "tree", id: "tree", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const edges = svg("g", { class: "edges" }), dots = svg("g", { class: "nodes" });
    g.append(edges, dots);
    const pinned = el("div", { class: "pinned", id: "tree-pinned" }, el("p", { class: "note" }, "hover a node for its step and reward; click to pin its path's text"));
    const color = r => r === null || r === undefined ? "#999" : `hsl(${Math.round(120 * Math.max(0, Math.min(1, r)))} 70% 42%)`;
    const lines = n => [
      "node " + n.id + " · depth " + n.depth + " · " + n.status + (onChosen.has(n.id) ? " · chosen path" : ""),
      "reward " + num(n.reward) + " · value " + num(n.value) + " · " + (n.tokens ?? 0) + " tokens" + (n.finish ? " · finish " + n.finish : ""),
      n.text ? (n.text.length > 600 ? n.text.slice(0, 600) + " …" : n.text) : "(the problem)",
    ];
    for (const n of nodes.values()) {
      if (n.parent !== null && nodes.has(n.parent)) {
        const p = nodes.get(n.parent);
        edges.appendChild(svg("path", { d: `M${p.x},${p.y} C${(p.x + n.x) / 2},${p.y} ${(p.x + n.x) / 2},${n.y} ${n.x},${n.y}`,
          class: "edge " + (onChosen.has(n.id) ? "chosen" : onPath.has(n.id) ? "final" : n.status) }));
      }
      const dot = svg("circle", { cx: n.x, cy: n.y, r: n.status === "path" ? 6 : 4.5, fill: color(n.reward),
        class: "node " + n.status + (onChosen.has(n.id) ? " chosen" : ""), "data-node": n.id,
        "data-reward": n.reward === null ? "" : n.reward, "data-status": n.status });
      dot.addEventListener("mousemove", e => TTS.tip(e, lines(n)));
      dot.addEventListener("mouseleave", e => TTS.tip(e, null));
      dot.addEventListener("click", () => {
        const path = [];
        for (let m = n; m; m = nodes.get(m.parent)) path.unshift(m);
        pinned.replaceChildren(el("b", {}, lines(n)[0]), el("div", {}, lines(n)[1]),
          el("ol", { class: "steps" }, path.filter(m => m.parent !== null).map(m => el("li", { class: onChosen.has(m.id) ? "chosen" : "" },
            el("span", { class: "reward" }, "reward " + num(m.reward) + " "), el("pre", {}, m.text)))));
      });
      dots.appendChild(dot);
      if (labels && n.text) {
        dots.appendChild(svg("text", { x: n.x + 8, y: n.y - 6, class: "steplabel" }, n.text.length > 18 ? n.text.slice(0, 17) + "…" : n.text));
      }
    }
    const counts = {};
    for (const n of nodes.values()) counts[n.status] = (counts[n.status] || 0) + 1;
    let scale = 1;
    const zoom = f => { scale *= f; g.setAttribute("width", W * scale); g.setAttribute("height", H * scale); };
    return section("Search tree", "tree-view",
      el("p", { class: "note" }, nodes.size + " nodes: " + Object.entries(counts).map(([k, v]) => v + " " + k).join(", ")
        + (t.truncated ? " (the first " + t.truncated.kept + " of " + t.truncated.total + " nodes stored)" : "")
        + ". Colour: reward (red 0 → green 1); thick blue: the chosen path; blue: the other final paths; faded: pruned.",
        " ", el("button", { onclick: () => zoom(1.25) }, "+"), el("button", { onclick: () => zoom(0.8) }, "−")),
      el("div", { class: "treebox" }, g), pinned);
  }

  // -- DeepConf ----------------------------------------------------------------------------
  function deepconf(run) {
    const curves = run.details && run.details.view && run.details.view.confidence_curves;
    if (!curves || !curves.length) return null;
    const tel = run.record.telemetry || {};
    const thr = typeof tel.threshold === "number" ? tel.threshold : null;
    const voters = new Set((tel.voters || []).map(Number));
    const stops = tel.stop_reasons || {};
    const warm = run.details.view.warmup || 0;
    const pts = curves.flat();
    if (!pts.length) return null;
    const W = 640, H = 260, L = 48, R = 12, T = 12, B = 34;
    const maxX = Math.max(...pts.map(p => p[0]), 1);
    let lo = Math.min(...pts.map(p => p[1]), thr ?? Infinity), hi = Math.max(...pts.map(p => p[1]), thr ?? -Infinity);
    if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
    const px = x => L + x / maxX * (W - L - R), py = y => T + (hi - y) / (hi - lo) * (H - T - B);
    const g = svg("svg", { class: "chart", id: "deepconf-chart", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    for (let k = 0; k <= 4; k++) {
      const y = lo + (hi - lo) * k / 4;
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "gridline" }));
      g.appendChild(svg("text", { x: L - 4, y: py(y) + 4, class: "tick", "text-anchor": "end" }, num(y)));
    }
    for (let k = 0; k <= 4; k++) {
      g.appendChild(svg("text", { x: px(maxX * k / 4), y: H - B + 14, class: "tick", "text-anchor": "middle" }, num(Math.round(maxX * k / 4))));
    }
    g.appendChild(svg("text", { x: (L + W) / 2, y: H - 6, class: "axis", "text-anchor": "middle" },
      "tokens generated (group confidence: mean over the last window)"));
    curves.forEach((c, i) => {
      if (!c.length) return;
      const cls = stops[i] ? "stopped" : voters.has(i) ? "voter" : "other";
      const props = { class: "conf " + cls + (i < warm ? " warmup" : ""), "data-trace": i };
      // a trace of one group (shorter than a window, or stopped at its first) is a point
      const line = c.length > 1 ? svg("polyline", Object.assign(props, { points: c.map(p => px(p[0]) + "," + py(p[1])).join(" ") }))
        : svg("circle", Object.assign(props, { cx: px(c[0][0]), cy: py(c[0][1]), r: 3.5 }));
      const tr = (run.details.traces || [])[i] || {};
      line.addEventListener("mousemove", e => TTS.tip(e, ["trace #" + i + (i < warm ? " (warm-up)" : ""),
        "lowest group confidence " + num(Math.min(...c.map(p => p[1]))), "answer " + (tr.answer ?? "none"),
        stops[i] ? "stopped: " + stops[i] + " at " + tr.tokens + " tokens" : voters.has(i) ? "counted in the vote" : "not counted"]));
      line.addEventListener("mouseleave", e => TTS.tip(e, null));
      g.appendChild(line);
      if (stops[i]) g.appendChild(svg("text", { x: px(c[c.length - 1][0]), y: py(c[c.length - 1][1]) + 4, class: "stopmark", "text-anchor": "middle" }, "×"));
    });
    if (thr !== null) {
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: py(thr), y2: py(thr), class: "threshold", id: "threshold" }));
      g.appendChild(svg("text", { x: W - R - 2, y: py(thr) - 4, class: "tick", "text-anchor": "end" }, "threshold " + num(thr)));
    }
    return section("DeepConf: confidence against the threshold", "deepconf",
      el("p", { class: "note" }, curves.length + " traces; green: counted in the vote, red ×: stopped below the threshold, grey: not counted"
        + (warm ? "; dashed: the " + warm + " warm-up traces" : "") + (tel.fallback ? ". No trace passed: plain majority (fallback)." : ".")),
      g);
  }

  // -- DeepPrune ---------------------------------------------------------------------------
  function deepprune(run) {
    const tel = run.record.telemetry || {};
    if (!Array.isArray(tel.clusters)) return null;
    const traces = (run.details && run.details.traces) || [];
    const joinP = (run.details && run.details.view && run.details.view.join_p) || {};
    const stops = tel.stop_reasons || {};
    return section("DeepPrune: clusters", "clusters",
      el("p", { class: "note" }, tel.clusters.length + " clusters; " + (tel.pruned ?? 0) + " traces pruned; " + (tel.judge_calls ?? 0)
        + " judge calls" + (tel.judge_failures ? ", " + tel.judge_failures + " failed" : "")),
      el("ol", { class: "clusters" }, tel.clusters.map((members, k) => {
        const rep = traces[members[0]] || {};
        return el("li", { "data-cluster": k }, el("b", {}, "size " + members.length), " · answer ", el("code", {}, rep.answer ?? "none"), " · ",
          members.map((t, j) => el("span", { class: "chip" + (j === 0 ? " rep" : " member") },
            "#" + t + (j === 0 ? " representative" : "") + (stops[t] ? " " + stops[t] + " at " + ((traces[t] || {}).tokens ?? "?") + " tokens" : "")
            + (joinP[t] !== undefined ? " · P(same) " + num(joinP[t]) : ""))));
      })));
  }

  // -- particle filtering ------------------------------------------------------------------
  function particles(run) {
    const tel = run.record.telemetry || {};
    if (!Array.isArray(tel.weights) || !tel.weights.length) return null;
    const steps = tel.weights, drawn = tel.resampled || [];
    const rows = Math.max(...steps.map(w => w.length));
    const C = 34, RH = 22, L = 60, T = 26;
    const W = L + steps.length * C + 10, H = T + rows * RH + 10;
    const g = svg("svg", { class: "chart", id: "pf-chart", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    for (let j = 0; j < rows; j++) g.appendChild(svg("text", { x: L - 6, y: T + j * RH + 4, class: "tick", "text-anchor": "end" }, "particle " + j));
    let boundary = 0;
    (tel.resamplings || []).slice(0, -1).forEach(n => {
      boundary += n;
      g.appendChild(svg("line", { x1: L + boundary * C, x2: L + boundary * C, y1: 4, y2: H - 4, class: "run-boundary" }));
    });
    steps.forEach((w, t) => {
      g.appendChild(svg("text", { x: L + t * C + C / 2, y: 14, class: "tick", "text-anchor": "middle" }, "t" + (t + 1)));
      const counts = new Map();
      (drawn[t] || []).forEach(d => counts.set(d, (counts.get(d) || 0) + 1));
      w.forEach((v, j) => {
        const dot = svg("circle", { cx: L + t * C + C / 2, cy: T + j * RH, r: Math.max(1, 10 * Math.sqrt(v)), class: "weight",
          "data-step": t, "data-particle": j });
        dot.addEventListener("mousemove", e => TTS.tip(e, ["step " + (t + 1) + ", pool entry " + j, "weight " + num(v), "drawn " + (counts.get(j) || 0) + " times"]));
        dot.addEventListener("mouseleave", e => TTS.tip(e, null));
        g.appendChild(dot);
        if (counts.get(j)) g.appendChild(svg("text", { x: L + t * C + C / 2 + 9, y: T + j * RH - 6, class: "count" }, "×" + counts.get(j)));
      });
    });
    return section("Particle filtering: weights per resampling step", "particles",
      el("p", { class: "note" }, "circle area ∝ resampling weight; ×k: drawn k times into the next step"
        + ((tel.resamplings || []).length > 1 ? "; vertical lines separate particle Gibbs iterations" : "")),
      el("div", { class: "treebox" }, g));
  }

  // -- budget forcing ----------------------------------------------------------------------
  function forcing(run, ctx) {
    const th = (run.record.telemetry || {}).thinking;
    if (!th) return null;
    return section("Budget forcing", "forcing", el("p", {},
      th.samples + " forced samples · " + th.waits + " Waits inserted · " + th.forced_close + " thinking closed at the budget",
      ctx.wait ? " (each occurrence of " + JSON.stringify(ctx.wait) + " in a trace's thinking is highlighted)" : ""));
  }

  function firstFinish(run) {
    const tel = run.record.telemetry || {};
    if (!Array.isArray(tel.finish_order)) return null;
    return section("First finish", "first-finish", el("p", {}, "finished first: " + (tel.finish_order.map(i => "#" + i).join(", ") || "none")
      + (tel.cut && tel.cut.length ? " · cut at max_tokens: " + tel.cut.map(i => "#" + i).join(", ") : "")
      + (tel.fallback ? " · fallback: " + tel.fallback : "")));
  }

  function raw(run) {
    const parts = { record: run.record.telemetry };
    if (run.details && run.details.telemetry) parts.summarised = run.details.telemetry;
    if (run.details && run.details.view) parts.view = run.details.view;
    return el("details", { class: "raw" }, el("summary", {}, "telemetry as stored"), el("pre", {}, JSON.stringify(parts, null, 1)));
  }

  return { votes, usage, traces, tree, deepconf, deepprune, particles, forcing, firstFinish, raw };
})();
