// Trace viewer (trace_view.html.j2; data: src/report/trace_view.rs). A sample's text is built
// once; stepping and choosing a head only move a few classes, so 32k-token prompts stay quick.
// State lives in the URL hash: #trace=NAME&sample=ID&step=T&head=L:H.
(function () {
  'use strict';
  var root = document.querySelector('.tv');
  if (!root) return;
  var data = JSON.parse(root.querySelector('.tv-data').textContent);
  // A report lists the traces it leaves out with no samples; only the others can be picked.
  var traces = data.traces.filter(function (tr) { return tr.samples.length > 0; });
  if (!traces.length) return;
  function q(c) { return root.querySelector(c); }
  var elTrace = q('.tv-trace'), elSample = q('.tv-sample'), elStep = q('.tv-step');
  var elGrid = q('.tv-grid'), elGen = q('.tv-gen'), elPrompt = q('.tv-prompt');
  var st = { t: 0, s: 0, step: 0, head: null };
  var toks = [], cells = [], marked = [], built = { t: -1, s: -1 }, gridShape = '';

  function trace() { return traces[st.t]; }
  function sample() { return trace().samples[st.s]; }
  function clamp(x, lo, hi) { return Math.max(lo, Math.min(hi, x)); }

  traces.forEach(function (tr, i) {
    var o = document.createElement('option');
    o.value = i;
    o.textContent = tr.name + ' (' + tr.samples.length + ' of ' + tr.total_samples + ' samples)';
    elTrace.appendChild(o);
  });
  if (traces.length < 2) q('.tv-trace-pick').hidden = true;

  function fillSamples() {
    elSample.textContent = '';
    trace().samples.forEach(function (s, i) {
      var o = document.createElement('option');
      o.value = i;
      o.textContent = s.id + ' (' + s.prompt_tokens + ' prompt tokens, ' + s.steps.length + ' steps)';
      elSample.appendChild(o);
    });
  }

  function buildGrid() {
    var tr = trace(), shape = tr.layers + 'x' + tr.heads;
    if (shape === gridShape) return;
    gridShape = shape;
    elGrid.textContent = '';
    elGrid.style.gridTemplateColumns = '2.2em repeat(' + tr.heads + ', 13px)';
    var frag = document.createDocumentFragment();
    function label(text, cls) {
      var d = document.createElement('div');
      d.className = cls;
      d.textContent = text;
      frag.appendChild(d);
    }
    label('L\\H', 'tv-lab tv-hlab');
    for (var h = 0; h < tr.heads; h++) label(h % 5 === 0 ? String(h) : '', 'tv-lab tv-hlab');
    cells = [];
    for (var l = 0; l < tr.layers; l++) {
      label(String(l), 'tv-lab');
      for (h = 0; h < tr.heads; h++) {
        var c = document.createElement('div');
        c.className = 'tv-cell';
        c.setAttribute('data-head', l + ':' + h);
        frag.appendChild(c);
        cells.push(c);
      }
    }
    elGrid.appendChild(frag);
  }

  function tokenSpan(text, pos, cls) {
    var sp = document.createElement('span');
    sp.className = cls;
    sp.setAttribute('data-p', pos);
    sp.textContent = text;
    return sp;
  }

  // The prompt and the generated text, one span per position (prompt positions first).
  function buildText() {
    if (built.t === st.t && built.s === st.s) return;
    built = { t: st.t, s: st.s };
    var sm = sample(), needle = {};
    sm.needle.forEach(function (p) { needle[p] = true; });
    toks = [];
    marked = [];
    var frag = document.createDocumentFragment();
    var hasText = sm.prompt.length === sm.prompt_tokens;
    for (var p = 0; p < sm.prompt_tokens; p++) {
      var cls = 'tv-tok' + (needle[p] ? ' tv-needle' : '') + (hasText ? '' : ' tv-nopiece');
      var sp = tokenSpan(hasText ? sm.prompt[p] : '\u00b7', p, cls);
      frag.appendChild(sp);
      toks.push(sp);
    }
    elPrompt.textContent = '';
    elPrompt.appendChild(frag);
    frag = document.createDocumentFragment();
    sm.pieces.forEach(function (piece, i) {
      var sp = tokenSpan(piece, sm.prompt_tokens + i, 'tv-tok tv-g');
      sp.title = 'step ' + i;
      frag.appendChild(sp);
      toks.push(sp);
    });
    elGen.textContent = '';
    elGen.appendChild(frag);
    var ans = sm.answer ? ' · answer: ' + sm.answer : '';
    var note = hasText ? '' : ' · this trace does not record the prompt text (traced before rhx recorded prompt_pieces): each dot is one token';
    q('.tv-info').textContent = trace().model + ' · ' + trace().rule + ' · ' + trace().layers + ' layers × ' + trace().heads +
      ' heads · sample ' + sm.id + ': ' + sm.prompt_tokens + ' prompt tokens, needle at ' + span(sm.needle) + ans + note;
  }

  function span(ps) {
    if (!ps.length) return 'none';
    return ps.length === 1 ? String(ps[0]) : ps[0] + '–' + ps[ps.length - 1] + ' (' + ps.length + ' tokens)';
  }

  function mark(el, cls) {
    if (!el) return;
    el.classList.add(cls);
    marked.push(el);
  }

  // Scrolls a text box (not the page) so that `el` is in its middle.
  function reveal(el) {
    if (!el) return;
    var box = el.parentNode;
    var top = el.offsetTop - box.clientHeight / 2;
    box.scrollTop = Math.max(0, top);
  }

  // Opening a sample starts at its first step with retrieval heads (step 0 when none has any).
  function firstStep(sm) {
    for (var i = 0; i < sm.steps.length; i++) if (sm.steps[i].heads.length) return i;
    return 0;
  }

  function firstHead(sm) {
    for (var i = 0; i < sm.steps.length; i++) if (sm.steps[i].heads.length) return sm.steps[i].heads[0].slice();
    return [0, 0];
  }

  // Per-head vectors come as "0,0,36,…" (src/report/trace_view.rs); split once, when first shown.
  function ints(v) { return typeof v === 'string' ? (v ? v.split(',').map(Number) : []) : (v || []); }
  function unpack(step) {
    if (!step.unpacked) {
      step.argmax = ints(step.argmax);
      step.top_k = ints(step.top_k);
      step.reasoning = ints(step.reasoning);
      step.unpacked = true;
    }
    return step;
  }

  function show() {
    var tr = trace(), sm = sample();
    buildGrid();
    buildText();
    var n = sm.steps.length;
    st.step = clamp(st.step, 0, Math.max(0, n - 1));
    if (!st.head || st.head[0] >= tr.layers || st.head[1] >= tr.heads) st.head = firstHead(sm);
    elTrace.value = String(st.t);
    elSample.value = String(st.s);
    elStep.max = String(Math.max(0, n - 1));
    elStep.value = String(st.step);
    marked.forEach(function (el) { el.classList.remove('tv-argmax', 'tv-topk', 'tv-cur'); });
    marked = [];
    cells.forEach(function (c) { c.className = 'tv-cell'; c.style.background = ''; c.title = c.getAttribute('data-head'); });
    var step = sm.steps[st.step] && unpack(sm.steps[st.step]);
    if (!step) {
      q('.tv-steplabel').textContent = 'no decoding steps in this sample';
      q('.tv-headlabel').textContent = '';
      return;
    }
    q('.tv-steplabel').textContent = 'step ' + st.step + ' / ' + (n - 1) + ': ' + JSON.stringify(sm.pieces[st.step]) +
      ' · |H_t| = ' + step.heads.length;
    var maxS = 0;
    step.reasoning.forEach(function (s) { if (s > maxS) maxS = s; });
    if (maxS > 0) {
      step.reasoning.forEach(function (s, i) {
        cells[i].style.background = 'rgba(230, 120, 30, ' + (0.6 * s / maxS).toFixed(3) + ')';
        cells[i].title += ' · S = ' + s;
      });
    }
    step.heads.forEach(function (hd, i) {
      var c = cells[hd[0] * tr.heads + hd[1]];
      c.classList.add('tv-in');
      var w = step.weights[i];
      if (w !== undefined) {
        c.style.background = 'rgba(33, 102, 172, ' + (0.3 + 0.7 * clamp(w, 0, 1)).toFixed(3) + ')';
        c.title += ' · in H_t, weight ' + w;
      } else {
        c.style.background = '';
        c.title += ' · in H_t';
      }
    });
    var hi = st.head[0] * tr.heads + st.head[1];
    cells[hi].classList.add('tv-sel');
    mark(toks[sm.prompt_tokens + st.step], 'tv-cur');
    reveal(toks[sm.prompt_tokens + st.step]);
    if (!step.argmax.length) {
      q('.tv-headlabel').textContent = '— this trace did not capture attention argmax positions (no retrieval capture)';
      return;
    }
    var a = step.argmax[hi];
    var top = step.top_k;
    var k = top.length / (tr.layers * tr.heads);
    for (var j = 0; j < k; j++) {
      var p = top[hi * k + j];
      if (p !== a) mark(toks[p], 'tv-topk');
    }
    mark(toks[a], 'tv-argmax');
    reveal(toks[a]);
    var where = a < sm.prompt_tokens ? 'prompt' : 'generated step ' + (a - sm.prompt_tokens);
    var inNeedle = sm.needle.indexOf(a) >= 0 ? ', in the needle' : '';
    var inH = cells[hi].classList.contains('tv-in') ? ' · in H_t' : '';
    var piece = toks[a] ? JSON.stringify(toks[a].textContent) : '?';
    q('.tv-headlabel').textContent = '— head ' + st.head[0] + ':' + st.head[1] + ' attends most to position ' + a + ' ' + piece +
      ' (' + where + inNeedle + ')' + (k ? ', top-' + k + ' shaded' : '') + inH;
  }

  function writeHash() {
    var h = [];
    if (traces.length > 1) h.push('trace=' + encodeURIComponent(trace().name));
    h.push('sample=' + encodeURIComponent(sample().id), 'step=' + st.step, 'head=' + st.head[0] + ':' + st.head[1]);
    try { history.replaceState(null, '', '#' + h.join('&')); } catch (e) { /* file:// in some browsers */ }
  }

  // Applies #trace=..&sample=..&step=..&head=L:H; other anchors (a report's sections) are left alone.
  function readHash() {
    var params = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var i = kv.indexOf('=');
      if (i > 0) params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
    });
    if (!('sample' in params || 'step' in params || 'head' in params || 'trace' in params)) return false;
    if ('trace' in params) {
      traces.forEach(function (tr, i) { if (tr.name === params.trace) st.t = i; });
    }
    if ('sample' in params) {
      trace().samples.forEach(function (s, i) { if (s.id === params.sample) st.s = i; });
    }
    if ('step' in params) st.step = parseInt(params.step, 10) || 0;
    if ('head' in params) {
      var lh = params.head.split(':').map(function (x) { return parseInt(x, 10); });
      if (lh.length === 2 && lh[0] >= 0 && lh[1] >= 0) st.head = lh;
    }
    return true;
  }

  function change(f) {
    return function (e) {
      f(e);
      show();
      writeHash();
    };
  }

  elTrace.addEventListener('change', change(function () {
    st.t = parseInt(elTrace.value, 10);
    st.s = 0;
    st.step = firstStep(sample());
    fillSamples();
  }));
  elSample.addEventListener('change', change(function () { st.s = parseInt(elSample.value, 10); st.step = firstStep(sample()); }));
  elStep.addEventListener('input', change(function () { st.step = parseInt(elStep.value, 10); }));
  q('.tv-prev').addEventListener('click', change(function () { st.step -= 1; }));
  q('.tv-next').addEventListener('click', change(function () { st.step += 1; }));
  elGrid.addEventListener('click', change(function (e) {
    var h = e.target.getAttribute && e.target.getAttribute('data-head');
    if (h) st.head = h.split(':').map(Number);
  }));
  document.addEventListener('keydown', function (e) {
    if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
    var tag = e.target.tagName;
    if (tag === 'SELECT' || tag === 'INPUT' || tag === 'TEXTAREA') return;
    if (!root.hasAttribute('data-standalone') && !active) return;
    e.preventDefault();
    change(function () { st.step += e.key === 'ArrowRight' ? 1 : -1; })();
  });
  // In a report, arrow keys step only after a click in the viewer (until a click elsewhere).
  var active = false;
  document.addEventListener('pointerdown', function (e) { active = root.contains(e.target); });
  // A deep link into a report scrolls the page to the viewer.
  function bringIntoView() {
    if (!root.hasAttribute('data-standalone')) root.scrollIntoView();
  }
  window.addEventListener('hashchange', function () {
    var t = st.t;
    if (readHash()) {
      if (t !== st.t) fillSamples();
      show();
      bringIntoView();
    }
  });

  var linked = readHash();
  if (!linked) st.step = firstStep(sample());
  fillSamples();
  show();
  if (linked) bringIntoView();
})();
