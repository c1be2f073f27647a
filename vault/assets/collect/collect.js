// The vault's embed for a platform's page: frames the vault's card form and hands the platform
// the token it produces. The platform's page never sees the card number: the form is a page of
// the vault's origin, and the browser keeps other origins out of it.
//
//   <div id="card"></div>
//   <script src="https://vault.example/collect.js"></script>
//   <script>
//     VaultCollect.mount(document.getElementById('card'), {
//       url: session.url,                  // from POST /v1/collect_sessions, via your backend
//       clientSecret: session.client_secret,
//       locale: 'en',                      // or 'ru'; default: the browser's language
//       onToken: function (card) { /* card.token, card.last4, card.brand */ },
//       onError: function (error) { /* error.code */ },
//       onReady: function () {}
//     });
//   </script>
//
// Messages are accepted only from the frame this call created and only from the vault's
// origin (the origin of `url`); the secret goes only to that origin. No dependencies.
(function (root) {
  'use strict';

  function mount(element, options) {
    options = options || {};
    if (!element || typeof element.appendChild !== 'function') {
      throw new TypeError('VaultCollect.mount: the first argument must be a DOM element');
    }
    if (typeof options.url !== 'string') {
      throw new TypeError('VaultCollect.mount: options.url must be the session url from POST /v1/collect_sessions');
    }
    if (typeof options.clientSecret !== 'string') {
      throw new TypeError('VaultCollect.mount: options.clientSecret must be the session client_secret');
    }
    var url = new URL(options.url, document.baseURI);
    var vaultOrigin = url.origin;
    var session = url.pathname.split('/').pop();
    var frame = document.createElement('iframe');
    frame.src = url.origin + url.pathname;
    frame.title = options.title || 'Card details';
    frame.setAttribute('referrerpolicy', 'no-referrer');
    frame.style.border = '0';
    frame.style.width = '100%';
    frame.style.height = '22rem';
    frame.style.display = 'block';

    function call(name, value) {
      if (typeof options[name] === 'function') {
        try { options[name](value); } catch (e) { setTimeout(function () { throw e; }); }
      }
    }

    function onMessage(event) {
      if (event.source !== frame.contentWindow || event.origin !== vaultOrigin) return;
      var data = event.data;
      if (!data || typeof data.type !== 'string' || data.session !== session) return;
      switch (data.type) {
        case 'vault-collect:ready':
          frame.contentWindow.postMessage(
            { type: 'vault-collect:init', clientSecret: options.clientSecret, locale: options.locale },
            vaultOrigin
          );
          call('onReady');
          break;
        case 'vault-collect:resize':
          if (typeof data.height === 'number' && data.height > 0 && data.height < 5000) {
            frame.style.height = data.height + 'px';
          }
          break;
        case 'vault-collect:token':
          call('onToken', { token: String(data.token), last4: String(data.last4), brand: String(data.brand) });
          break;
        case 'vault-collect:error':
          call('onError', { code: String(data.code) });
          break;
      }
    }

    window.addEventListener('message', onMessage);
    element.appendChild(frame);
    return {
      frame: frame,
      unmount: function () {
        window.removeEventListener('message', onMessage);
        if (frame.parentNode) frame.parentNode.removeChild(frame);
      }
    };
  }

  root.VaultCollect = { mount: mount };
})(window);
