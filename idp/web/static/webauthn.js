// Passkeys and security keys (WebAuthn Level 3). Served from /static under script-src 'self';
// the pages carry no inline script. A form marked data-webauthn="create" or "get" carries the
// server's options as JSON (data-options) and a hidden "credential" input: on submit, the
// browser's ceremony runs and its result is sent in that input. Without JavaScript, or in a
// browser without WebAuthn, these forms stay hidden and password and codes still work.
"use strict";

(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function fromBase64url(value) {
    const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = atob(padded);
    const out = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i += 1) {
      out[i] = bytes.charCodeAt(i);
    }
    return out.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 1) {
      text += String.fromCharCode(bytes[i]);
    }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: fromBase64url(item.id) });
    });
  }

  function creationOptions(json) {
    const options = Object.assign({}, json);
    options.challenge = fromBase64url(json.challenge);
    options.user = Object.assign({}, json.user, { id: fromBase64url(json.user.id) });
    options.excludeCredentials = withIds(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    const options = Object.assign({}, json);
    options.challenge = fromBase64url(json.challenge);
    options.allowCredentials = withIds(json.allowCredentials);
    return options;
  }

  function serialise(credential) {
    const response = credential.response;
    const out = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toBase64url(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toBase64url(response.authenticatorData);
      out.response.signature = toBase64url(response.signature);
      if (response.userHandle) {
        out.response.userHandle = toBase64url(response.userHandle);
      }
    }
    return JSON.stringify(out);
  }

  function showError(form) {
    const box = form.querySelector("[data-webauthn-error]");
    if (box) {
      box.hidden = false;
      box.focus();
    }
  }

  // Parts of a page that only make sense with WebAuthn (the passkey sign-in button).
  document.querySelectorAll("[data-webauthn-only]").forEach(function (part) {
    part.hidden = false;
  });

  document.querySelectorAll("[data-webauthn]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      const field = form.querySelector("input[name=credential]");
      if (field.value) {
        return; // the ceremony is done: this is the real submit
      }
      event.preventDefault();
      const json = JSON.parse(form.dataset.options);
      const ceremony =
        form.dataset.webauthn === "create"
          ? navigator.credentials.create({ publicKey: creationOptions(json) })
          : navigator.credentials.get({ publicKey: requestOptions(json) });
      ceremony.then(
        function (credential) {
          field.value = serialise(credential);
          form.submit();
        },
        function () {
          showError(form);
        }
      );
    });
  });
})();
