(function () {
  const data = JSON.parse(document.getElementById('wv-data').textContent);
  const q = document.getElementById('q'), ruleSel = document.getElementById('rule'), order = document.getElementById('order');
  const rows = document.getElementById('rows'), more = document.getElementById('more'), count = document.getElementById('count');
  const PAGE = 200;
  let limit = PAGE;
  data.rules.forEach(function (text, i) {
    const o = document.createElement('option'); o.value = String(i); o.textContent = text; ruleSel.appendChild(o);
  });
  function pad(n) { return String(n).padStart(5, '0'); }
  function matches(c, needle) {
    if (!needle) return true;
    return String(c[0]) === needle || c[1].toLowerCase().includes(needle) || c[2].toLowerCase().includes(needle);
  }
  function cell(tr, text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }
  function render() {
    const needle = q.value.trim().toLowerCase(), r = Number(ruleSel.value), key = order.value;
    let list = data.classes.filter(function (c) { return matches(c, needle) && (r < 0 || c[6][r] > 0); });
    const value = {rate: function (c) { return r < 0 ? c[4] / c[3] : c[6][r] / c[3]; }, dropped: function (c) { return r < 0 ? c[4] : c[6][r]; },
                   samples: function (c) { return c[3]; }, label: function (c) { return -c[0]; }}[key];
    list.sort(function (a, b) { return value(b) - value(a) || a[0] - b[0]; });
    rows.replaceChildren();
    list.slice(0, limit).forEach(function (c) {
      const tr = document.createElement('tr');
      cell(tr, String(c[0]), 'num');
      const link = document.createElement('a'); link.href = 'classes/' + pad(c[0]) + '.html'; link.textContent = c[1] || ('class ' + c[0]);
      cell(tr, '').appendChild(link);
      cell(tr, c[3].toLocaleString(), 'num'); cell(tr, c[4].toLocaleString(), 'num'); cell(tr, c[5] ? c[5].toLocaleString() : '', 'num');
      const bar = document.createElement('div'); bar.className = 'bar';
      c[6].forEach(function (n, i) {
        if (!n) return;
        const s = document.createElement('span'); s.style.width = (100 * n / c[3]).toFixed(2) + '%'; s.style.background = data.colors[i];
        s.title = data.rules[i] + ': ' + n; bar.appendChild(s);
      });
      const td = cell(tr, ''); td.appendChild(bar);
      const small = document.createElement('small'); small.textContent = (100 * c[4] / c[3]).toFixed(1) + '%'; td.appendChild(small);
      rows.appendChild(tr);
    });
    count.textContent = Math.min(limit, list.length) + ' of ' + list.length + ' classes shown' + (list.length < data.classes.length ? ' (filtered from ' + data.classes.length + ')' : '');
    more.hidden = list.length <= limit;
    document.querySelectorAll('#mosaic .tile').forEach(function (t) {
      const ok = !needle || t.dataset.label === needle || t.dataset.names.includes(needle);
      t.hidden = !ok;
    });
  }
  q.addEventListener('input', function () { limit = PAGE; render(); });
  ruleSel.addEventListener('change', function () { limit = PAGE; render(); });
  order.addEventListener('change', render);
  more.addEventListener('click', function () { limit += PAGE; render(); });
  render();
})();
