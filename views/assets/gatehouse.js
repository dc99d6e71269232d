// A form is sent once. A second click (or Enter) while the first answer is on its way would send it again, and the
// browser would show the second answer, which can only say the first one did it: a code spent, a link used, a
// password already changed, recovery codes shown to nobody.
document.addEventListener('submit', (event) => {
  const form = event.target;
  if (form.dataset.sent) event.preventDefault();
  else form.dataset.sent = 'true';
});
// Back on a page the browser kept (the back button), its forms may be sent again.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) for (const form of document.querySelectorAll('form[data-sent]')) delete form.dataset.sent;
});
