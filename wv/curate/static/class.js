(function () {
  let filter = 'all';
  const chips = document.querySelectorAll('.chip[data-f]');
  function apply() {
    document.querySelectorAll('.card').forEach(function (card) {
      const ok = filter === 'all' || card.dataset.rule === filter && card.dataset.state === 'dropped' || card.dataset.state === filter;
      card.hidden = !ok;
    });
    document.querySelectorAll('section.group').forEach(function (s) {
      s.hidden = !s.querySelector('.card:not([hidden])');
    });
    chips.forEach(function (c) { c.classList.toggle('on', c.dataset.f === filter); });
  }
  chips.forEach(function (c) { c.addEventListener('click', function () { filter = c.dataset.f; apply(); }); });
  const sort = document.getElementById('sort');
  document.querySelectorAll('.grid').forEach(function (g) {
    Array.prototype.forEach.call(g.children, function (card, i) { card.dataset.order = String(i); });
  });
  sort.addEventListener('change', function () {
    const parts = sort.value.split(':'), j = parts[0], dir = Number(parts[1] || 1);
    document.querySelectorAll('.grid').forEach(function (g) {
      const cards = Array.prototype.slice.call(g.children);
      cards.sort(function (a, b) {
        if (!j) return Number(a.dataset.order) - Number(b.dataset.order);
        const x = a.dataset['s' + j], y = b.dataset['s' + j];
        if (x === '' && y === '') return 0;
        if (x === '') return 1;
        if (y === '') return -1;
        return dir * (Number(x) - Number(y));
      });
      cards.forEach(function (c) { g.appendChild(c); });
    });
  });
  document.querySelectorAll('.desc').forEach(function (d) { d.addEventListener('click', function () { d.classList.toggle('open'); }); });
  const jump = document.getElementById('jump');
  jump.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && jump.value !== '') location.href = String(Number(jump.value)).padStart(5, '0') + '.html';
  });
})();
