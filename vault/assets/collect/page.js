// The vault's card form. Served by the vault from its own origin under a CSP that allows this
// script alone, and connecting only back to the vault: the card number typed here goes to
// POST /collect/{id}/submit and nowhere else, and the page that frames it gets only
// {token, last4, brand}, by postMessage addressed to its exact origin.
//
// The client secret never travels in a query string (which reaches logs): standalone, it comes
// in the URL fragment (#secret=…), which is removed from the address bar as soon as it is read;
// framed, the parent hands it over by postMessage, accepted only from window.parent and only
// from one of the session's allowed origins.
//
// No dependencies and no build step: plain ES2017 that Chromium, Firefox and Safari run as is.
(function () {
  'use strict';

  var TEXT = {
    en: {
      title: 'Card details',
      heading: 'Card for payouts',
      number: 'Card number',
      expiry: 'Expiry (MM/YY)',
      'expiry-placeholder': 'MM/YY',
      name: 'Name on card',
      submit: 'Save card',
      sending: 'Saving…',
      note: 'The card number goes straight to the card vault; this site only receives a token.',
      noscript: 'This form needs JavaScript.',
      'done-heading': 'Card saved',
      done: 'Card ending {last4} is saved. You can close this page.',
      'number-empty': 'Enter the card number.',
      'number-short': 'The card number is too short.',
      'number-long': 'A card number has at most 19 digits.',
      'number-luhn': 'This card number has a typo: check the digits.',
      'expiry-format': 'Enter the expiry as MM/YY, for example 08/29.',
      'expiry-month': 'The month must be from 01 to 12.',
      'expiry-past': 'This card has expired.',
      'name-empty': 'Enter the name as it is on the card.',
      'name-number': 'Enter the name, not a card number.',
      'completed-heading': 'This link is used',
      completed: 'A card was already saved with this form. Ask for a new link if you need one.',
      'expired-heading': 'This link has expired',
      expired: 'The form is no longer open. Ask for a new link.',
      'refused-heading': 'This form cannot be used',
      refused: 'The link is incomplete or not valid here. Ask for a new link.',
      'rate-limited': 'Too many attempts. Wait {seconds} s and try again.',
      network: 'The card vault could not be reached. Check the connection and try again.',
      failed: 'The card could not be saved. Try again in a moment.',
      waiting: 'Waiting for the page to set up the form…'
    },
    ru: {
      title: 'Данные карты',
      heading: 'Карта для выплат',
      number: 'Номер карты',
      expiry: 'Срок действия (ММ/ГГ)',
      'expiry-placeholder': 'ММ/ГГ',
      name: 'Имя на карте',
      submit: 'Сохранить карту',
      sending: 'Сохраняем…',
      note: 'Номер карты уходит прямо в хранилище карт; этот сайт получает только токен.',
      noscript: 'Для этой формы нужен JavaScript.',
      'done-heading': 'Карта сохранена',
      done: 'Карта, оканчивающаяся на {last4}, сохранена. Эту страницу можно закрыть.',
      'number-empty': 'Введите номер карты.',
      'number-short': 'Номер карты слишком короткий.',
      'number-long': 'В номере карты не больше 19 цифр.',
      'number-luhn': 'В номере карты опечатка: проверьте цифры.',
      'expiry-format': 'Введите срок как ММ/ГГ, например 08/29.',
      'expiry-month': 'Месяц должен быть от 01 до 12.',
      'expiry-past': 'Срок действия карты истёк.',
      'name-empty': 'Введите имя так, как оно написано на карте.',
      'name-number': 'Введите имя, а не номер карты.',
      'completed-heading': 'Ссылка уже использована',
      completed: 'Карта по этой форме уже сохранена. Если нужно, попросите новую ссылку.',
      'expired-heading': 'Срок действия ссылки истёк',
      expired: 'Форма больше не принимает карты. Попросите новую ссылку.',
      'refused-heading': 'Этой формой нельзя воспользоваться',
      refused: 'Ссылка неполная или недействительна здесь. Попросите новую ссылку.',
      'rate-limited': 'Слишком много попыток. Подождите {seconds} с и попробуйте снова.',
      network: 'Хранилище карт недоступно. Проверьте соединение и попробуйте снова.',
      failed: 'Не удалось сохранить карту. Попробуйте чуть позже.',
      waiting: 'Ждём, пока страница подготовит форму…'
    }
  };

  var BRANDS = {
    visa: 'Visa', mastercard: 'Mastercard', mir: 'Мир', amex: 'Amex', jcb: 'JCB',
    unionpay: 'UnionPay', maestro: 'Maestro'
  };

  var main = document.getElementById('collect');
  if (!main) return;
  var session = main.getAttribute('data-session');
  var origins = (main.getAttribute('data-origins') || '').split(' ').filter(Boolean);
  var nameRequired = main.getAttribute('data-name') === 'required';
  var framed = window.parent !== window;
  // Only our own languages: a lookup by a caller's word must not reach Object.prototype
  // ('__proto__', 'constructor').
  function known(wanted) { return typeof wanted === 'string' && Object.prototype.hasOwnProperty.call(TEXT, wanted); }
  var lang = known(document.documentElement.lang) ? document.documentElement.lang : 'en';
  var secret = null;
  var parentOrigin = null;
  var sent = false;

  var el = function (id) { return document.getElementById(id); };
  var form = el('collect-form');
  var number = el('card-number');
  var expiry = el('card-expiry');
  var name = el('card-name');
  var button = el('submit');
  var status = el('status');

  function t(key, values) {
    var text = TEXT[lang][key] || TEXT.en[key] || '';
    Object.keys(values || {}).forEach(function (k) { text = text.replace('{' + k + '}', values[k]); });
    return text;
  }

  function setLanguage(wanted) {
    if (known(wanted)) lang = wanted;
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach(function (node) {
      node.textContent = t(node.getAttribute('data-i18n'));
    });
    expiry.placeholder = t('expiry-placeholder');
  }

  // What the frame tells its parent. Every message goes to one exact origin, never '*': to the
  // parent that handed us the secret, or, before that, to each allowed origin in turn (the
  // browser delivers only the one that matches the parent and drops the rest).
  function tell(message) {
    if (!framed) return;
    message.session = session;
    var targets = parentOrigin ? [parentOrigin] : origins;
    targets.forEach(function (origin) {
      try { window.parent.postMessage(message, origin); } catch (e) { /* malformed origin */ }
    });
  }

  function resized() {
    tell({ type: 'vault-collect:resize', height: Math.ceil(document.documentElement.scrollHeight) });
  }

  // --- Card number: digits only, grouped as typed, brand and Luhn feedback -------------------

  function digitsOf(text) { return text.replace(/\D/g, ''); }

  function brandOf(d) {
    var p = function (n) { return parseInt(d.slice(0, n), 10); };
    var within = function (n, lo, hi) { return d.length >= n && p(n) >= lo && p(n) <= hi; };
    if (within(4, 2200, 2204)) return 'mir';
    if (within(4, 2221, 2720) || within(2, 51, 55)) return 'mastercard';
    if (d.charAt(0) === '4') return 'visa';
    if (within(2, 34, 34) || within(2, 37, 37)) return 'amex';
    if (within(4, 3528, 3589)) return 'jcb';
    if (within(2, 62, 62)) return 'unionpay';
    if (within(2, 50, 50) || within(2, 56, 58) || within(2, 63, 63) || within(2, 67, 67)) return 'maestro';
    return 'unknown';
  }

  function luhn(d) {
    var sum = 0;
    for (var i = 0; i < d.length; i++) {
      var n = d.charCodeAt(d.length - 1 - i) - 48;
      if (i % 2 === 1) { n *= 2; if (n > 9) n -= 9; }
      sum += n;
    }
    return sum % 10 === 0;
  }

  function grouped(d, brand) {
    if (brand === 'amex') {
      return [d.slice(0, 4), d.slice(4, 10), d.slice(10, 15)].filter(Boolean).join(' ');
    }
    return (d.match(/.{1,4}/g) || []).join(' ');
  }

  function numberProblem(d) {
    if (d.length === 0) return 'number-empty';
    if (d.length < 13) return 'number-short';
    if (d.length > 19) return 'number-long';
    if (!luhn(d)) return 'number-luhn';
    return null;
  }

  function showError(input, key) {
    var slot = el(input.id + '-error');
    slot.textContent = key ? t(key) : '';
    if (key) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    resized();
  }

  number.addEventListener('input', function () {
    var before = number.value;
    var caret = number.selectionStart === null ? before.length : number.selectionStart;
    var digitsBeforeCaret = digitsOf(before.slice(0, caret)).length;
    var d = digitsOf(before).slice(0, 19);
    var brand = brandOf(d);
    var text = grouped(d, brand);
    number.value = text;
    // Keep the caret after the same digit it followed, across the spaces just added.
    var pos = 0;
    for (var seen = 0; pos < text.length && seen < digitsBeforeCaret; pos++) {
      if (text.charAt(pos) !== ' ') seen++;
    }
    if (document.activeElement === number) number.setSelectionRange(pos, pos);
    el('card-brand').textContent = BRANDS[brand] || '';
    if (number.getAttribute('aria-invalid') === 'true') showError(number, numberProblem(d));
    else if (d.length >= 16 && !luhn(d)) showError(number, 'number-luhn');
  });
  number.addEventListener('blur', function () {
    var d = digitsOf(number.value);
    if (d.length) showError(number, numberProblem(d));
  });

  // --- Expiry: MM/YY -------------------------------------------------------------------------

  function parseExpiry(text) {
    var m = /^\s*(\d{1,2})\s*\/?\s*(\d{2})\s*$/.exec(text);
    if (!m) return { problem: 'expiry-format' };
    var month = parseInt(m[1], 10);
    var year = 2000 + parseInt(m[2], 10);
    if (month < 1 || month > 12) return { problem: 'expiry-month' };
    var now = new Date();
    var thisMonth = now.getUTCFullYear() * 12 + now.getUTCMonth() + 1;
    if (year * 12 + month < thisMonth) return { problem: 'expiry-past' };
    return { month: month, year: year };
  }

  expiry.addEventListener('input', function (event) {
    var d = digitsOf(expiry.value).slice(0, 4);
    // "3" means March: 03/ at once, so nobody has to type the leading zero.
    if (d.length === 1 && d > '1') d = '0' + d;
    var deleting = event.inputType && event.inputType.indexOf('delete') === 0;
    expiry.value = d.length > 2 || (d.length === 2 && !deleting) ? d.slice(0, 2) + '/' + d.slice(2) : d;
    if (expiry.getAttribute('aria-invalid') === 'true' && d.length === 4) {
      showError(expiry, parseExpiry(expiry.value).problem || null);
    }
  });
  expiry.addEventListener('blur', function () {
    if (expiry.value) showError(expiry, parseExpiry(expiry.value).problem || null);
  });

  function nameProblem(text) {
    var trimmed = text.trim();
    if (!trimmed) return 'name-empty';
    if (digitsOf(trimmed).length >= 12) return 'name-number';
    return null;
  }

  // --- States --------------------------------------------------------------------------------

  function clearCard() {
    number.value = '';
    expiry.value = '';
    if (name) name.value = '';
    el('card-brand').textContent = '';
  }

  function gone(kind) {
    clearCard();
    form.hidden = true;
    el('gone-heading').textContent = t(kind + '-heading');
    el('gone-text').textContent = t(kind);
    el('gone').hidden = false;
    resized();
  }

  function done(answer) {
    clearCard();
    form.hidden = true;
    el('done-text').textContent = t('done', { last4: answer.card.last4 });
    el('done').hidden = false;
    tell({ type: 'vault-collect:token', token: answer.token, last4: answer.card.last4, brand: answer.card.brand });
    resized();
  }

  function say(key, values, bad) {
    status.textContent = key ? t(key, values) : '';
    status.className = bad ? 'status bad' : 'status';
    resized();
  }

  function ready() {
    form.hidden = false;
    say(null);
    resized();
  }

  // --- Submit --------------------------------------------------------------------------------

  var FIELD_INPUT = { pan: number, exp_month: expiry, exp_year: expiry, cardholder_name: name };

  function failed(status, body, retryAfter) {
    var error = (body && body.error) || {};
    var code = error.code || 'failed';
    tell({ type: 'vault-collect:error', code: code });
    if (code === 'invalid_pan') return showError(number, 'number-luhn');
    if (code === 'card_expired') return showError(expiry, 'expiry-past');
    if (code === 'invalid_request' && FIELD_INPUT[error.param]) {
      var input = FIELD_INPUT[error.param];
      return showError(input, input === name ? 'name-empty' : input === expiry ? 'expiry-format' : 'number-luhn');
    }
    if (code === 'session_completed') return gone('completed');
    if (code === 'session_expired') return gone('expired');
    if (code === 'invalid_secret' || code === 'origin_not_allowed' || code === 'not_found') return gone('refused');
    if (code === 'rate_limited') return say('rate-limited', { seconds: retryAfter || '60' }, true);
    return say('failed', null, true);
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (sent || !secret) return;
    var d = digitsOf(number.value);
    var exp = parseExpiry(expiry.value);
    var problems = [
      [number, numberProblem(d)],
      [expiry, exp.problem || null],
      [name, nameRequired ? nameProblem(name.value) : null]
    ];
    var first = null;
    problems.forEach(function (p) { showError(p[0], p[1]); if (p[1] && !first) first = p[0]; });
    if (first) { first.focus(); return; }

    var body = { client_secret: secret, pan: d, exp_month: exp.month, exp_year: exp.year };
    if (nameRequired) body.cardholder_name = name.value.trim();
    if (parentOrigin) body.parent_origin = parentOrigin;
    sent = true;
    button.disabled = true;
    say('sending');
    fetch('/collect/' + encodeURIComponent(session) + '/submit', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer'
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (answer) {
        if (response.ok && answer && answer.token) return done(answer);
        failed(response.status, answer, response.headers.get('Retry-After'));
      });
    }, function () {
      say('network', null, true);
    }).then(function () {
      sent = false;
      button.disabled = false;
      if (status.textContent === t('sending')) say(null);
    });
  });

  // --- Start ---------------------------------------------------------------------------------

  setLanguage(null);
  if (nameRequired) {
    el('name-row').hidden = false;
    name.required = true;
  }
  var state = main.getAttribute('data-state');
  if (state === 'completed' || state === 'expired') {
    gone(state);
    return;
  }

  if (!framed) {
    // Standalone (a payout link): the secret is in the fragment, which no server sees. It
    // leaves the address bar first, before anything that could fail on a malformed link.
    var fragment = location.hash.replace(/^#/, '');
    if (location.hash) history.replaceState(null, '', location.pathname);
    var params = Object.create(null);
    fragment.split('&').forEach(function (pair) {
      var i = pair.indexOf('=');
      if (i <= 0) return;
      try {
        params[decodeURIComponent(pair.slice(0, i))] = decodeURIComponent(pair.slice(i + 1));
      } catch (e) { /* a malformed escape: the pair is ignored */ }
    });
    setLanguage(params.locale);
    // A session framed by the platform's page takes its secret only from that page: opened
    // on its own, nothing vouches for who is looking at it.
    secret = origins.length === 0 && typeof params.secret === 'string' ? params.secret : null;
    if (!secret) gone('refused'); else ready();
    return;
  }

  window.addEventListener('message', function (event) {
    if (event.source !== window.parent || origins.indexOf(event.origin) < 0) return;
    var data = event.data;
    if (!data || data.type !== 'vault-collect:init' || typeof data.clientSecret !== 'string') return;
    if (parentOrigin && parentOrigin !== event.origin) return;
    parentOrigin = event.origin;
    secret = data.clientSecret;
    setLanguage(typeof data.locale === 'string' ? data.locale : null);
    ready();
  });
  say('waiting');
  tell({ type: 'vault-collect:ready' });
})();
