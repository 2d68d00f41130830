// The console's flow: load every panel with the stored token; on 401/403 ask for the token,
// keep it for this tab, and load again. Refreshes every 30 seconds while the tab is visible.
import { AuthError, forgetToken, setToken, token } from './api.js';
import * as panels from './panels.js';

const $ = (selector) => document.querySelector(selector);
const REFRESH_MS = 30_000;
let loading;

function showLogin(message) {
  $('#panels').hidden = true;
  $('#sign-out').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message ?? '';
  $('#token').focus();
}

async function loadAll() {
  const results = await Promise.allSettled([panels.spend(), panels.budgets(), panels.denials(), panels.providers(), panels.policy(), panels.audit(), panels.ledger()]);
  const refused = results.find((r) => r.status === 'rejected' && r.reason instanceof AuthError);
  if (refused) {
    showLogin(token() ? `${refused.reason.message}: check the token` : '');
    return;
  }
  $('#login').hidden = true;
  $('#panels').hidden = false;
  $('#sign-out').hidden = !token();
  $('#updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = String(Date.now());
}

function refresh() {
  loading ??= loadAll().finally(() => {
    loading = undefined;
  });
  return loading;
}

async function openFromHash() {
  const match = /^#decision\/(.+)$/.exec(window.location.hash);
  if (match) await panels.showRecord(decodeURIComponent(match[1])).catch(() => showLogin('an admin token is required'));
}

$('#login').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('#token').value.trim();
  $('#token').value = '';
  if (value) setToken(value);
  void refresh();
});
$('#sign-out').addEventListener('click', () => {
  forgetToken();
  showLogin();
});
$('#refresh').addEventListener('click', () => void refresh());
$('#record-close').addEventListener('click', () => {
  $('#record').hidden = true;
  history.replaceState(null, '', window.location.pathname);
});
for (const id of ['#spend-by', '#spend-since', '#spend-bucket']) $(id).addEventListener('change', () => void panels.spend());
window.addEventListener('hashchange', () => void openFromHash());
setInterval(() => {
  if (document.visibilityState === 'visible' && !$('#panels').hidden) void refresh();
}, REFRESH_MS);

void refresh().then(openFromHash);
