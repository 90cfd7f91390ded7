// vllm-extract review page. Everything shown comes from the JSON block #review-data and is put in
// the DOM with textContent / createElement only: document text is data, never markup.
// A document's text is drawn only when it is opened, so large outputs open fast.
"use strict";
(function () {
  const started = performance.now();
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const parsed = performance.now();
  const docs = data.docs;
  const types = data.types;
  const hasGold = data.hasGold;
  const MATCH = 1, FALSE_POSITIVE = 2, MISSED = 3;
  const GOLD_LABEL = ["", "match", "false positive", "missed"];
  const GOLD_SHORT = ["", "\u2713 match", "\u2717 FP", "\u25cc missed"];
  const PAGE = 200;

  // Okabe & Ito (2008) colour-blind-safe palette, then three of Paul Tol's muted colours that stay
  // apart from it; past ten types the colours repeat with a double underline (class "alt").
  const PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#332288", "#999933", "#882255"];
  const colours = types.map(function (_, i) {
    const solid = PALETTE[i % PALETTE.length];
    return { solid: solid, tint: tint(solid, i % PALETTE.length < 7 ? 0.32 : 0.24), alt: i >= PALETTE.length };
  });

  function tint(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    const mix = function (c) { return Math.round(c * alpha + 255 * (1 - alpha)); };
    return "rgb(" + mix(n >> 16) + ", " + mix((n >> 8) & 255) + ", " + mix(n & 255) + ")";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function paint(node, typeIndex) {
    node.style.setProperty("--c", colours[typeIndex].solid);
    node.style.setProperty("--t", colours[typeIndex].tint);
    if (colours[typeIndex].alt) node.classList.add("alt");
    return node;
  }

  function fmt(x) { return x === null || x === undefined ? "\u2014" : x.toFixed(2); }
  function num(n) { return n.toLocaleString("en-US"); }

  // ---- header: subtitle and legend -------------------------------------------------------
  const $ = function (id) { return document.getElementById(id); };
  document.title = data.title;
  $("title").textContent = data.title;
  const totalEntities = data.summary.types.reduce(function (a, b) { return a + b; }, 0);
  $("subtitle").textContent = num(docs.length) + " documents \u00b7 " + num(totalEntities) + " entities" +
    (hasGold ? " \u00b7 compared with gold (strict)" : "");
  const legend = $("legend");
  types.forEach(function (name, i) {
    const item = el("li");
    item.appendChild(paint(el("span", "swatch"), i));
    item.appendChild(el("span", null, name));
    legend.appendChild(item);
  });
  if (hasGold) {
    legend.appendChild(el("li", "sep"));
    [[MATCH, "match"], [FALSE_POSITIVE, "false positive"], [MISSED, "missed (gold only)"]].forEach(function (g) {
      const item = el("li");
      const sw = el("span", "swatch g" + g[0]);
      sw.style.setProperty("--c", "#8a8f96");
      sw.style.setProperty("--t", "#e3e5e8");
      item.appendChild(sw);
      item.appendChild(el("span", null, g[1]));
      legend.appendChild(item);
    });
  }
  if (!hasGold) document.body.classList.add("hide-gold");

  // ---- summary charts ----------------------------------------------------------------------
  function barChart(title, rows) {
    const box = el("div", "chart");
    box.appendChild(el("h3", null, title));
    const max = Math.max(1, ...rows.map(function (r) { return r.value; }));
    rows.forEach(function (r) {
      const row = el("div", "bar-row");
      const label = el("span", "bar-label", r.label);
      label.title = r.label;
      row.appendChild(label);
      const track = el("span", "bar-track");
      const bar = el("span", "bar");
      bar.style.display = "block";
      bar.style.width = (100 * r.value / max).toFixed(1) + "%";
      bar.style.setProperty("--c", r.colour);
      track.appendChild(bar);
      row.appendChild(track);
      row.appendChild(el("span", "bar-value", num(r.value)));
      box.appendChild(row);
    });
    if (!rows.length) box.appendChild(el("p", "muted", "none"));
    return box;
  }
  const charts = $("charts");
  charts.appendChild(barChart("Entities per type", types.map(function (name, i) {
    return { label: name, value: data.summary.types[i], colour: colours[i].solid };
  })));
  const statusRows = Object.keys(data.summary.status).map(function (st) {
    return { label: st, value: data.summary.status[st], colour: st === "ok" ? "#0072B2" : "#D55E00" };
  });
  if (data.summary.withoutText) statusRows.push({ label: "without text", value: data.summary.withoutText, colour: "#999999" });
  charts.appendChild(barChart("Documents per status", statusRows));
  if (hasGold) {
    const g = data.summary.gold;
    const box = el("div", "chart");
    const heading = el("h3", null, "Against gold (strict)");
    heading.title = "A match has the same type, start and end as a gold span";
    box.appendChild(heading);
    const line1 = el("p", "scores");
    line1.appendChild(el("b", null, "F1 " + fmt(g.f1)));
    line1.appendChild(document.createTextNode("   precision " + fmt(g.p) + " \u00b7 recall " + fmt(g.r)));
    box.appendChild(line1);
    box.appendChild(el("p", "scores", "matches " + num(g.tp) + " \u00b7 false positives " + num(g.fp) +
      " \u00b7 missed " + num(g.fn)));
    charts.appendChild(box);
  }
  data.warnings.forEach(function (warning) { charts.appendChild(el("p", "note wide", warning)); });

  // ---- document list -----------------------------------------------------------------------
  const list = $("doc-list");
  const search = $("search");
  const statusFilter = $("status-filter");
  const more = $("more");
  const filterOptions = [["all", "All"], ["ok", "ok"], ["error", "errors"], ["notext", "no text"]];
  if (hasGold) filterOptions.push(["diff", "with FP/missed"]);
  filterOptions.forEach(function (o) {
    const opt = el("option", null, o[1]);
    opt.value = o[0];
    statusFilter.appendChild(opt);
  });

  let lowerIds = null;
  let shown = [];
  let rendered = 0;
  let current = -1;

  function matches(doc, filter) {
    switch (filter) {
      case "ok": return doc.st === "ok";
      case "error": return doc.st !== "ok";
      case "notext": return doc.text === null;
      case "diff": return doc.gold !== null && (doc.gold.fp > 0 || doc.gold.fn > 0);
      default: return true;
    }
  }

  function applyFilter() {
    const q = search.value.trim().toLowerCase();
    const filter = statusFilter.value;
    if (q && lowerIds === null) lowerIds = docs.map(function (d) { return d.id.toLowerCase(); });
    shown = [];
    for (let n = 0; n < docs.length; n++) {
      if ((!q || lowerIds[n].indexOf(q) !== -1) && matches(docs[n], filter)) shown.push(n);
    }
    list.textContent = "";
    rendered = 0;
    renderMore();
    $("list-count").textContent = shown.length === docs.length
      ? num(docs.length) + " documents"
      : num(shown.length) + " of " + num(docs.length) + " documents";
  }

  function renderMore() {
    const frag = document.createDocumentFragment();
    const end = Math.min(shown.length, rendered + PAGE);
    for (; rendered < end; rendered++) frag.appendChild(docRow(shown[rendered]));
    list.appendChild(frag);
    more.hidden = rendered >= shown.length;
    more.textContent = "Show more (" + num(shown.length - rendered) + " left)";
  }

  function typeCounts(doc) {
    const counts = new Map();
    doc.ents.forEach(function (e) {
      if (e[3] !== MISSED) counts.set(e[0], (counts.get(e[0]) || 0) + 1);
    });
    return counts;
  }

  function docRow(n) {
    const doc = docs[n];
    const li = el("li");
    const button = el("button", "doc-row");
    button.type = "button";
    button.dataset.n = String(n);
    if (n === current) button.setAttribute("aria-current", "true");
    const row1 = el("span", "row1");
    const id = el("span", "doc-id", doc.id);
    id.title = doc.id;
    row1.appendChild(id);
    if (doc.gold) row1.appendChild(el("span", "f1", "F1 " + fmt(doc.gold.f1)));
    const counts = typeCounts(doc);
    let total = 0;
    counts.forEach(function (c) { total += c; });
    row1.appendChild(el("span", "count", String(total)));
    row1.appendChild(el("span", "badge " + statusClass(doc.st), doc.st));
    button.appendChild(row1);
    if (counts.size) {
      const row2 = el("span", "row2");
      Array.from(counts.keys()).sort(function (a, b) { return a - b; }).forEach(function (t) {
        row2.appendChild(paint(el("span", "chip", types[t] + " " + counts.get(t)), t));
      });
      button.appendChild(row2);
    }
    if (doc.err) {
      const row3 = el("span", "row3", doc.err);
      row3.title = doc.err;
      button.appendChild(row3);
    }
    li.appendChild(button);
    return li;
  }

  function statusClass(st) { return st === "ok" ? "ok" : st === "error" ? "error" : "other"; }

  list.addEventListener("click", function (event) {
    const button = event.target.closest(".doc-row");
    if (button) openDoc(Number(button.dataset.n), true);
  });
  list.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const li = event.target.closest("li");
    if (!li) return;
    const next = event.key === "ArrowDown" ? li.nextElementSibling : li.previousElementSibling;
    if (next) {
      event.preventDefault();
      next.firstChild.focus();
    } else if (event.key === "ArrowDown" && !more.hidden) {
      event.preventDefault();
      renderMore();
      if (li.nextElementSibling) li.nextElementSibling.firstChild.focus();
    }
  });
  more.addEventListener("click", renderMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && !more.hidden) renderMore();
    }, { root: document.querySelector(".sidebar"), rootMargin: "400px" }).observe(more);
  }
  let searchTimer = 0;
  search.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilter, docs.length > 2000 ? 120 : 0);
  });
  statusFilter.addEventListener("change", applyFilter);
  document.addEventListener("keydown", function (event) {
    const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement;
    if (event.key === "/" && !typing) {
      event.preventDefault();
      search.focus();
    }
  });

  // ---- one document ----------------------------------------------------------------------
  const head = $("doc-head");
  const textBox = $("doc-text");
  const rows = $("ent-rows");
  const caption = $("ent-caption");
  let openEnts = [];
  let openText = null;
  let openCps = null; // the text as code points, only when it has characters outside the BMP
  let drawn = new Set(); // indexes of the entities drawn in the text

  // Offsets in the data are code points (as in the output file); the DOM counts UTF-16 units.
  function unitIndex(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return null;
    const map = new Int32Array(text.length + 1);
    let cp = 0;
    for (let i = 0; i < text.length; cp++) {
      map[cp] = i;
      const c = text.charCodeAt(i);
      const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
        text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) <= 0xdfff;
      i += pair ? 2 : 1;
    }
    map[cp] = text.length;
    return { map: map, length: cp };
  }

  function openDoc(n, fromUser) {
    if (!(n >= 0 && n < docs.length)) return;
    const previous = list.querySelector('.doc-row[aria-current="true"]');
    if (previous) previous.removeAttribute("aria-current");
    current = n;
    const row = list.querySelector('.doc-row[data-n="' + n + '"]');
    if (row) row.setAttribute("aria-current", "true");
    const doc = docs[n];
    renderHead(doc);
    renderText(doc);
    renderTable(doc);
    hideTip();
    if (fromUser) {
      const hash = "#doc=" + n;
      if (location.hash !== hash) history.replaceState(null, "", hash);
      $("main").scrollTop = 0;
    }
  }

  function renderHead(doc) {
    head.textContent = "";
    const h2 = el("h2");
    h2.appendChild(el("span", null, doc.id));
    h2.appendChild(el("span", "badge " + statusClass(doc.st), doc.st));
    if (doc.gold) {
      h2.appendChild(el("span", "f1", "F1 " + fmt(doc.gold.f1) + " \u00b7 P " + fmt(doc.gold.p) +
        " \u00b7 R " + fmt(doc.gold.r) + " \u00b7 " + doc.gold.tp + " match, " + doc.gold.fp + " FP, " +
        doc.gold.fn + " missed"));
    }
    head.appendChild(h2);
    const meta = el("p", "meta");
    if (doc.src) meta.appendChild(el("span", null, "source " + doc.src));
    if (doc.i !== null) meta.appendChild(el("span", null, "index " + doc.i));
    meta.appendChild(el("span", null, doc.text !== null ? "text from " + doc.from : doc.from));
    if (doc.text !== null) meta.appendChild(el("span", null, num(unitLength(doc.text)) + " characters"));
    head.appendChild(meta);
    if (doc.meta.length) {
      const extra = el("p", "meta");
      doc.meta.forEach(function (kv) { extra.appendChild(el("span", null, kv[0] + ": " + kv[1])); });
      head.appendChild(extra);
    }
    if (doc.err) head.appendChild(el("div", "error-box", doc.err));
    doc.notes.forEach(function (note) { head.appendChild(el("p", "note", note)); });
  }

  function unitLength(text) {
    const idx = unitIndex(text);
    return idx ? idx.length : text.length;
  }

  function renderText(doc) {
    textBox.textContent = "";
    textBox.classList.toggle("empty", doc.text === null);
    openText = doc.text;
    openEnts = doc.ents;
    openCps = null;
    drawn = new Set();
    if (doc.text === null) {
      textBox.textContent = "No text to show: " + doc.from.replace(/^no text: /, "") + ". The entities are listed in the table.";
      return;
    }
    const text = doc.text;
    const idx = unitIndex(text);
    if (idx) openCps = Array.from(text);
    const cpLength = idx ? idx.length : text.length;
    const toUnit = idx ? function (cp) { return idx.map[cp]; } : function (cp) { return cp; };
    const marks = [];
    doc.ents.forEach(function (e, i) {
      if (e[1] >= 0 && e[1] < e[2] && e[2] <= cpLength && !(e.length > 4 && e[4] === "")) {
        marks.push({ i: i, s: toUnit(e[1]), e: toUnit(e[2]), ent: e });
      }
    });
    textBox.appendChild(markUp(text, marks));
  }

  // Nested marks for nested spans; a span crossing another is split into pieces (same data-i).
  function markUp(text, marks) {
    const frag = document.createDocumentFragment();
    if (!marks.length) {
      frag.appendChild(document.createTextNode(text));
      return frag;
    }
    const cuts = new Set([0, text.length]);
    const startsAt = new Map();
    marks.forEach(function (m) {
      cuts.add(m.s);
      cuts.add(m.e);
      if (!startsAt.has(m.s)) startsAt.set(m.s, []);
      startsAt.get(m.s).push(m);
    });
    const bounds = Array.from(cuts).sort(function (a, b) { return a - b; });
    const order = function (x, y) { return x.s - y.s || y.e - x.e || x.i - y.i; };
    let active = [];
    const stack = [];
    for (let k = 0; k + 1 < bounds.length; k++) {
      const a = bounds[k], b = bounds[k + 1];
      active = active.filter(function (m) { return m.e > a; });
      if (startsAt.has(a)) active = active.concat(startsAt.get(a));
      active.sort(order);
      let keep = 0;
      while (keep < stack.length && keep < active.length && stack[keep].m === active[keep]) keep++;
      stack.length = keep;
      for (let q = keep; q < active.length; q++) {
        const m = active[q];
        const node = markNode(m, !drawn.has(m.i));
        drawn.add(m.i);
        (q === 0 ? frag : stack[q - 1].node).appendChild(node);
        stack.push({ m: m, node: node });
      }
      const parent = stack.length ? stack[stack.length - 1].node : frag;
      parent.appendChild(document.createTextNode(text.slice(a, b)));
    }
    return frag;
  }

  function markNode(m, first) {
    const node = paint(el("mark", "ent g" + m.ent[3]), m.ent[0]);
    node.dataset.i = String(m.i);
    node.dataset.type = types[m.ent[0]];
    if (first) {
      node.tabIndex = 0;
      node.id = "ent-" + m.i;
    }
    return node;
  }

  // The entity's words: from the text when it is drawn, else the surface string the record gave.
  function surface(e) {
    if (e.length > 4 && e[4] !== "") return e[4];
    if (openText !== null && e[1] >= 0) {
      return openCps ? openCps.slice(e[1], e[2]).join("") : openText.slice(e[1], e[2]);
    }
    return e.length > 4 ? e[4] : "";
  }

  function renderTable(doc) {
    rows.textContent = "";
    const order = doc.ents.map(function (_, i) { return i; }).sort(function (x, y) {
      const a = doc.ents[x], b = doc.ents[y];
      const sa = a[1] < 0 ? Infinity : a[1], sb = b[1] < 0 ? Infinity : b[1];
      return sa - sb || b[2] - a[2] || x - y;
    });
    const frag = document.createDocumentFragment();
    order.forEach(function (i) {
      const e = doc.ents[i];
      const tr = el("tr");
      tr.dataset.i = String(i);
      const linked = drawn.has(i);
      if (linked) tr.tabIndex = 0; else tr.className = "nolink";
      const typeCell = el("td");
      typeCell.appendChild(paint(el("span", "chip", types[e[0]]), e[0]));
      tr.appendChild(typeCell);
      const textCell = el("td", null, surface(e));
      if (!linked) textCell.title = e[1] < 0 ? "not found in the text" : "not shown in the text";
      tr.appendChild(textCell);
      tr.appendChild(el("td", "num", e[1] < 0 ? "\u2014" : e[1]));
      tr.appendChild(el("td", "num", e[2] < 0 ? "\u2014" : e[2]));
      tr.appendChild(el("td", "gold-state", GOLD_SHORT[e[3]]));
      frag.appendChild(tr);
    });
    rows.appendChild(frag);
    const n = doc.ents.filter(function (e) { return e[3] !== MISSED; }).length;
    const missed = doc.ents.length - n;
    caption.textContent = "Entities (" + n + (missed ? ", and " + missed + " missed gold span" + (missed > 1 ? "s" : "") : "") + ")";
  }

  function jump(i) {
    const target = document.getElementById("ent-" + i);
    if (!target) return;
    target.scrollIntoView({ block: "center", behavior: "auto" });
    target.focus({ preventScroll: true });
    textBox.querySelectorAll('mark[data-i="' + i + '"]').forEach(function (m) {
      m.classList.remove("flash");
      void m.offsetWidth;
      m.classList.add("flash");
    });
  }
  rows.addEventListener("click", function (event) {
    const tr = event.target.closest("tr");
    if (tr && !tr.classList.contains("nolink")) jump(Number(tr.dataset.i));
  });
  rows.addEventListener("keydown", function (event) {
    const tr = event.target.closest("tr");
    if (!tr) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      jump(Number(tr.dataset.i));
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) {
        event.preventDefault();
        next.focus();
      }
    }
  });

  // ---- tooltip (hover and keyboard focus) -----------------------------------------------------
  const tip = $("tip");
  // The tip lists the mark under the pointer (or focused) and every mark around it, innermost first.
  function showTip(mark) {
    tip.textContent = "";
    for (let node = mark; node && node !== textBox; node = node.parentElement) {
      const e = node.matches("mark.ent") ? openEnts[Number(node.dataset.i)] : null;
      if (!e) continue;
      const entry = el("div", "tip-entry");
      const first = el("div");
      first.appendChild(el("span", "tip-type", types[e[0]]));
      const where = e[1] < 0 ? "not found in the text" : "[" + e[1] + ", " + e[2] + ")";
      first.appendChild(document.createTextNode(" " + where + (e[3] ? " \u00b7 " + GOLD_LABEL[e[3]] : "")));
      entry.appendChild(first);
      entry.appendChild(el("div", "tip-text", surface(e)));
      tip.appendChild(entry);
    }
    if (!tip.firstChild) return;
    tip.hidden = false;
    const r = mark.getBoundingClientRect();
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let top = r.bottom + 6;
    if (top + h > window.innerHeight - 4) top = Math.max(4, r.top - h - 6);
    tip.style.top = top + "px";
    tip.style.left = Math.max(4, Math.min(r.left, window.innerWidth - w - 4)) + "px";
    mark.setAttribute("aria-describedby", "tip");
  }
  function hideTip() { tip.hidden = true; }
  textBox.addEventListener("mouseover", function (event) {
    const mark = event.target.closest("mark.ent");
    if (mark) showTip(mark); else hideTip();
  });
  textBox.addEventListener("mouseleave", hideTip);
  textBox.addEventListener("focusin", function (event) {
    const mark = event.target.closest("mark.ent");
    if (mark) showTip(mark);
  });
  textBox.addEventListener("focusout", hideTip);
  $("main").addEventListener("scroll", hideTip, { passive: true });

  // ---- start -------------------------------------------------------------------------------
  function fromHash() {
    const m = /^#doc=(\d+)$/.exec(location.hash);
    return m ? Number(m[1]) : -1;
  }
  window.addEventListener("hashchange", function () {
    const n = fromHash();
    if (n >= 0) openDoc(n, false);
  });
  applyFilter();
  if (docs.length) {
    const n = fromHash();
    openDoc(n >= 0 && n < docs.length ? n : 0, false);
  } else {
    head.appendChild(el("p", "muted", "This output has no records."));
  }
  window.reviewPage = {
    open: function (n) { openDoc(n, true); },
    // Milliseconds since navigation start: the script started, the JSON was parsed, the page was drawn.
    timing: { startMs: started, parsedMs: parsed, readyMs: performance.now() },
  };
  document.documentElement.dataset.ready = "true";
})();
