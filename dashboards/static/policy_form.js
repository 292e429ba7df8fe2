// The policy form: a metric picked in a condition row shows its description under the
// list and its unit after the threshold, as the server draws them for a stored policy.
document.addEventListener('change', (ev) => {
  const sel = ev.target;
  if (!(sel instanceof HTMLSelectElement) || !sel.matches('select[data-metric]')) return;
  const opt = sel.selectedOptions[0];
  const row = sel.closest('tr');
  const about = row && row.querySelector('.metric-about');
  const unit = row && row.querySelector('.unit');
  if (about) about.textContent = opt ? (opt.title || '') : '';
  if (unit) unit.textContent = opt ? (opt.dataset.unit || '') : '';
});
