/* ripple's interactive report pieces, drawn with Apache ECharts (inlined before this script).
 * ripple.graph(id): the ripple graph whose data is the JSON in #id-data (ripple/interactive/graph.py).
 * ripple.lineChart(id), ripple.barChart(id): charts whose data is in #id-data (charts.py).
 * Every chart is kept in ripple.charts[id], every graph's API in ripple.graphs[id], the time a graph
 * was first drawn (ms from navigation start) in ripple.drawn[id] (the browser
 * tests use them: visibleIds(), pixelOf(nodeId), select(nodeId), setRole(role, on), setMaxHops(n),
 * setQuery(text)). */
(function () {
  'use strict';
  const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58',
    '#b5de2b', '#fde725'];
  const CHANGED = '#d1242f';

  function esc(s) {
    return String(s === null || s === undefined ? '' : s).replace(/[&<>"']/g,
      (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  }
  function num(x, digits) {
    if (x === null || x === undefined) return '–';
    return Number(x).toPrecision(digits || 3).replace(/\.?0+e/, 'e');
  }
  function data(id) { return JSON.parse(document.getElementById(id + '-data').textContent); }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function itemRows(n, meta) {
    const rows = [];
    if (n.prompt) rows.push(['prompt', esc(n.prompt)]);
    rows.push(['subject', esc(n.subject)], ['relation', esc(n.relation)], ['true answer', esc(n.answer)]);
    const moved = n.changed ? ' <b style="color:' + CHANGED + '">(changed)</b>' : ' (kept)';
    rows.push(['answer', esc(n.before) + ' → ' + esc(n.after) + moved]);
    rows.push(['Δ log p', num(n.dlogp)], ['drift (layer ' + esc(meta.layer) + ')', num(n.drift)]);
    if (n.drifts && n.drifts.length > 1) {
      rows.push(['drift by layer', n.drifts.map((d, i) => 'L' + esc(meta.layers[i]) + ' ' + num(d, 2)).join(', ')]);
    }
    rows.push(['hops', n.hops === null ? 'unreachable' : String(n.hops)], ['role', esc(n.role)]);
    if (meta.budget) rows.push(['evaluated', n.evaluated === false ? 'no (outside the budget)' : 'yes']);
    return rows;
  }
  function itemHtml(n, meta) {
    return '<table class="rg-item">' + itemRows(n, meta).map(([k, v]) => '<tr><th>' + k + '</th><td>' + v +
      '</td></tr>').join('') + '</table>';
  }

  function graph(id) {
    const d = data(id);
    const meta = d.meta, nodes = d.nodes;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const symbol = Object.fromEntries(meta.roles.map((r) => [r.name, r.symbol]));
    const reachable = nodes.filter((n) => n.hops !== null).map((n) => n.hops);
    const maxHops = reachable.length ? Math.max(...reachable) : 0;
    const state = {roles: new Set(meta.roles.map((r) => r.name)), maxHops: maxHops, unreachable: true, query: ''};
    const [lo, hi] = meta.log_drift;
    const canvas = document.getElementById(id + '-canvas');
    const chart = echarts.init(canvas, null, {renderer: 'canvas'});
    let visible = [];
    const xs = nodes.map((n) => n.x), ys = nodes.map((n) => n.y);
    const corners = [[Math.min(...xs), Math.min(...ys)], [Math.max(...xs), Math.max(...ys)]];

    function shown(n) {
      if (!state.roles.has(n.role)) return false;
      if (n.hops === null ? !state.unreachable : n.hops > state.maxHops) return false;
      if (state.query) {  // subject, relation, id, prompt or an answer
        const q = state.query.toLowerCase();
        if (![n.subject, n.relation, n.id, n.prompt, n.answer, n.before, n.after]
          .some((t) => t !== null && t !== undefined && String(t).toLowerCase().includes(q))) return false;
      }
      return true;
    }
    function value(n) {
      const v = n.drift > 0 ? Math.log10(n.drift) : lo;
      return Math.min(hi, Math.max(lo, v));
    }
    function draw() {
      visible = nodes.filter(shown);
      const on = new Set(visible.map((n) => n.id));
      const seriesData = visible.map((n) => ({
        name: n.id, x: n.x, y: n.y, value: value(n), symbol: symbol[n.role],
        symbolSize: n.role === 'edited' ? 22 : 9,
        itemStyle: Object.assign(n.changed ? {borderColor: CHANGED, borderWidth: 2} : {borderWidth: 0},
          n.evaluated === false ? {opacity: 0.3} : {}),
      }));
      // two invisible corners keep the view where it was: a filter hides items, it does not move them
      seriesData.push(...corners.map((c, i) => ({name: '\u0000corner' + i, x: c[0], y: c[1], symbolSize: 0,
        value: lo, tooltip: {show: false}, itemStyle: {opacity: 0}})));
      const edges = [];
      d.edges.forEach(([i, j, kind, sim]) => {
        const a = nodes[i], b = nodes[j];
        if (on.has(a.id) && on.has(b.id)) {
          edges.push({source: a.id, target: b.id, kind: kind, sim: sim,
            lineStyle: kind === 'knn' ? {color: '#9aa1a8', opacity: 0.25, width: 0.6} :
              {color: '#2f81f7', opacity: 0.3, width: 0.6}});
        }
      });
      chart.setOption({series: [{id: 'graph', data: seriesData, edges: edges}]});
      status.textContent = 'showing ' + visible.length + ' of ' + nodes.length + ' items' +
        (visible.length < nodes.length ? ' (filtered)' : '') + '; colour: drift at layer ' + meta.layer +
        ' (log scale), red outline: answer changed, shape: role';
    }

    chart.setOption({
      animation: false,
      title: {text: d.title, left: 'center', textStyle: {fontSize: 13}},
      tooltip: {trigger: 'item', confine: true, enterable: false,
        extraCssText: 'max-width:440px;white-space:normal;overflow-wrap:anywhere', formatter: (p) => {
        if (p.dataType === 'node') return itemHtml(byId.get(p.name), meta);
        if (p.dataType === 'edge') {
          return esc(p.data.source) + ' — ' + esc(p.data.target) + '<br>' + esc(p.data.kind) +
            (p.data.sim === null ? '' : ', similarity ' + num(p.data.sim));
        }
        return '';
      }},
      visualMap: {type: 'continuous', min: lo, max: hi, seriesIndex: 0, calculable: false, orient: 'horizontal',
        left: 'center', bottom: 4, itemHeight: 160, text: ['more drift', 'less drift'], inRange: {color: VIRIDIS},
        formatter: (v) => num(Math.pow(10, v), 2)},
      series: [{id: 'graph', type: 'graph', layout: 'none', roam: true, scaleLimit: {min: 0.2, max: 40},
        top: 40, bottom: 60, left: 20, right: 20,
        // dimming all but a node's neighbours repaints the whole graph at every hover: small graphs only
        emphasis: nodes.length > 2000 ? {scale: 1.6} : {focus: 'adjacency', scale: 1.6},
        select: {itemStyle: {borderColor: '#000', borderWidth: 3}}, selectedMode: 'single', data: [], edges: []}],
    });

    // controls
    const controls = document.getElementById(id + '-controls');
    const status = document.getElementById(id + '-status');
    const counts = {};
    nodes.forEach((n) => { counts[n.role] = (counts[n.role] || 0) + 1; });
    meta.roles.forEach((r) => {
      const label = el('label');
      const box = el('input', {type: 'checkbox', 'data-role': r.name, id: id + '-role-' + r.name.replace(/ /g, '-')});
      box.checked = true;
      box.addEventListener('change', () => { api.setRole(r.name, box.checked); });
      label.append(box, el('span', {class: 'rg-glyph'}, r.glyph), r.name + ' (' + counts[r.name] + ')');
      controls.append(label);
    });
    const hopLabel = el('label', {}, 'hops ≤ ');
    const hops = el('input', {type: 'number', min: '0', max: String(maxHops), value: String(maxHops),
      id: id + '-hops', style: 'width:4em'});
    let hopping = null;  // an empty box means every hop; a big graph redraws once the typing pauses
    hops.addEventListener('input', () => {
      const h = hops.value.trim() === '' ? maxHops : Number(hops.value);
      clearTimeout(hopping);
      if (nodes.length > 2000) hopping = setTimeout(() => api.setMaxHops(h), 250);
      else api.setMaxHops(h);
    });
    hopLabel.append(hops);
    const unreachLabel = el('label');
    const unreach = el('input', {type: 'checkbox', id: id + '-unreachable'});
    unreach.checked = true;
    unreach.addEventListener('change', () => { state.unreachable = unreach.checked; draw(); });
    unreachLabel.append(unreach, ' unreachable');
    const search = el('input', {type: 'search', placeholder: 'subject, relation, id or answer', id: id + '-search'});
    let typing = null;  // a big graph redraws once the typing pauses, not at every key
    search.addEventListener('input', () => {
      clearTimeout(typing);
      if (nodes.length > 2000) typing = setTimeout(() => api.setQuery(search.value), 250);
      else api.setQuery(search.value);
    });
    controls.append(hopLabel, unreachLabel, search);

    // the selected item and the damaged list
    const detail = document.getElementById(id + '-detail');
    detail.innerHTML = '<p>Hover over an item, or click one to keep it here.</p>';
    const damaged = nodes.filter((n) => meta.damage.includes(n.role))
      .sort((a, b) => Math.abs(b.dlogp || 0) - Math.abs(a.dlogp || 0) || (a.id < b.id ? -1 : 1));
    const list = document.getElementById(id + '-damaged');
    if (!damaged.length) list.replaceWith(el('p', {}, 'none'));
    damaged.forEach((n) => {
      const li = el('li');
      const b = el('button', {type: 'button', 'data-id': n.id},
        n.subject + ': ' + n.relation + ' (' + n.before + ' → ' + n.after + ')');
      b.addEventListener('click', () => api.select(n.id));
      li.append(b);
      list.append(li);
    });
    chart.on('click', (p) => { if (p.dataType === 'node') api.select(p.name); });

    const api = {
      chart: chart,
      visibleIds: () => visible.map((n) => n.id),
      setRole: (role, on) => {
        if (on) state.roles.add(role); else state.roles.delete(role);
        const box = document.getElementById(id + '-role-' + role.replace(/ /g, '-'));
        if (box) box.checked = on;
        draw();
      },
      setMaxHops: (h) => { state.maxHops = isNaN(h) ? maxHops : h; draw(); },
      setQuery: (q) => { state.query = q.trim(); draw(); },
      pixelOf: (nodeId) => {
        const i = visible.findIndex((n) => n.id === nodeId);
        if (i < 0) return null;
        const rect = canvas.getBoundingClientRect();
        const xy = chart.convertToPixel({seriesIndex: 0}, [visible[i].x, visible[i].y]);
        return xy ? [rect.left + xy[0], rect.top + xy[1]] : null;
      },
      select: (nodeId) => {
        const n = byId.get(nodeId);
        if (!n) return;
        if (!shown(n)) {  // bring a filtered-out item back: its role on, every hop, no search
          state.roles.add(n.role); state.maxHops = maxHops; state.unreachable = true; state.query = '';
          search.value = ''; hops.value = String(maxHops); unreach.checked = true;
          document.getElementById(id + '-role-' + n.role.replace(/ /g, '-')).checked = true;
          draw();
        }
        const i = visible.findIndex((m) => m.id === nodeId);
        chart.dispatchAction({type: 'hideTip'});
        chart.dispatchAction({type: 'select', seriesIndex: 0, dataIndex: i});  // outlined in black; the panel says the rest
        detail.innerHTML = '<h3>' + esc(n.id) + '</h3>' + itemHtml(n, meta);
      },
    };
    draw();
    requestAnimationFrame(() => { ripple.drawn[id] = performance.now(); });  // ECharts drew in setOption
    window.addEventListener('resize', () => chart.resize());
    ripple.graphs[id] = api;
    return api;
  }

  function axisTooltip(params) {
    const list = Array.isArray(params) ? params : [params];
    if (!list.length) return '';
    const head = esc(list[0].axisValueLabel !== undefined ? list[0].axisValueLabel : list[0].name);
    return head + '<br>' + list.map((p) => p.marker + esc(p.seriesName) + ': <b>' +
      num(Array.isArray(p.value) ? p.value[1] : p.value, 4) + '</b>').join('<br>');
  }

  function lineChart(id) {
    const d = data(id);
    const chart = echarts.init(document.getElementById(id), null, {renderer: 'canvas'});
    const series = d.series.map((s, i) => ({name: s.name, type: 'line', data: s.points, connectNulls: false,
      showSymbol: true, symbolSize: 5, markLine: i === 0 && d.marks.length ? {symbol: 'none', silent: false,
        label: {formatter: (p) => p.name}, data: d.marks.map((m) => ({xAxis: m.x, name: m.label}))} : undefined}));
    const xAxis = {type: d.x_log ? 'log' : 'value', name: d.x_label, nameLocation: 'middle', nameGap: 28, scale: true};
    if (d.marks.length) {  // the axis reaches every mark, even one outside the measured points
      const xs = d.marks.map((m) => m.x);
      xAxis.min = (v) => Math.min(v.min, ...xs);
      xAxis.max = (v) => Math.max(v.max, ...xs);
    }
    chart.setOption({
      animation: false, title: {text: d.title, left: 'center', textStyle: {fontSize: 13}},
      tooltip: {trigger: 'axis', formatter: axisTooltip}, legend: {top: 24, type: 'scroll'},
      grid: {top: 64, left: 64, right: 24, bottom: 56},
      xAxis: xAxis,
      yAxis: {type: d.y_log ? 'log' : 'value', name: d.y_label, nameLocation: 'middle', nameGap: 46, scale: true},
      dataZoom: [{type: 'inside'}], series: series,
    });
    window.addEventListener('resize', () => chart.resize());
    ripple.charts[id] = chart;
    return chart;
  }

  function barChart(id) {
    const d = data(id);
    const chart = echarts.init(document.getElementById(id), null, {renderer: 'canvas'});
    chart.setOption({
      animation: false, title: {text: d.title, left: 'center', textStyle: {fontSize: 13}},
      tooltip: {trigger: 'axis', axisPointer: {type: 'shadow'}, formatter: axisTooltip}, legend: {top: 24},
      grid: {top: 64, left: 64, right: 24, bottom: 56},
      xAxis: {type: 'category', data: d.categories, axisLabel: {interval: 0, rotate: d.categories.length > 6 ? 30 : 0}},
      yAxis: {type: 'value', name: d.y_label, nameLocation: 'middle', nameGap: 46},
      series: d.series.map((s) => ({name: s.name, type: 'bar', data: s.values})),
    });
    window.addEventListener('resize', () => chart.resize());
    ripple.charts[id] = chart;
    return chart;
  }

  window.ripple = {graph: graph, lineChart: lineChart, barChart: barChart, graphs: {}, charts: {}, drawn: {}};
})();
