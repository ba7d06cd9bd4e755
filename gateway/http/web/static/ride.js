// The ride code: a QR ticket (protocol/signed_qr.py, version 1) that this phone signs with
// its own Ed25519 key and draws itself, a new one every REFRESH seconds, each valid
// LIFETIME seconds. The key is made here by WebCrypto, cannot be read out, and stays in
// this browser's IndexedDB beside the certificate the gateway (the issuer) gave it.
(function () {
  "use strict";
  const box = document.getElementById("ride-code");
  if (!box) return;
  const status = document.getElementById("ride-status");
  const walletId = box.dataset.wallet, csrf = box.dataset.csrf, certifyUrl = box.dataset.certify;
  const LIFETIME = Number(box.dataset.lifetime), REFRESH = Number(box.dataset.refresh);
  const DOMAIN = new TextEncoder().encode("tapstack/qr/v1");
  const VERSION = 1, TICKET = 2, PRODUCT = 1; // product 1: a ride paid from the wallet
  const B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  let timer = null, ticking = null, expires = 0;

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const unhex = (text) => new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
  const be = (value, size) => { const out = new Uint8Array(size); for (let i = size - 1; i >= 0; i--) { out[i] = value & 0xff; value = Math.floor(value / 256); } return out; };
  const concat = (...parts) => { const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0)); let at = 0; parts.forEach((p) => { out.set(p, at); at += p.length; }); return out; };

  function base45(bytes) {  // RFC 9285
    let out = "";
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      let n = bytes[i] * 256 + bytes[i + 1];
      const c = n % 45; n = (n - c) / 45;
      const d = n % 45, e = (n - d) / 45;
      out += B45[c] + B45[d] + B45[e];
    }
    if (bytes.length % 2) { const n = bytes[bytes.length - 1]; out += B45[n % 45] + B45[Math.floor(n / 45)]; }
    return out;
  }

  // -- the card: key and certificate, kept per wallet in IndexedDB ---------------------------
  function store(mode, work) {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open("tapstack-wallet", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("cards");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const tx = open.result.transaction("cards", mode), request = work(tx.objectStore("cards"));
        tx.oncomplete = () => resolve(request.result);
        tx.onerror = () => reject(tx.error);
      };
    });
  }
  const load = () => store("readonly", (s) => s.get(walletId)).catch(() => null);
  const save = (card) => store("readwrite", (s) => s.put(card, walletId)).catch(() => null);

  async function card() {
    const now = Date.now() / 1000;
    const kept = await load();
    if (kept && kept.notAfter > now + 86400) return kept;
    const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
    const answer = await fetch(certifyUrl, {
      method: "POST", credentials: "same-origin", body: JSON.stringify({ public_key: hex(publicKey) }),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(body.message || "The gateway could not certify this phone's key.");
    const made = { privateKey: keys.privateKey, certificate: body.certificate, cardId: body.card_id, notAfter: body.not_after };
    await save(made);
    return made;
  }

  async function ticket(c) {
    const now = Math.floor(Date.now() / 1000);
    const nonce = crypto.getRandomValues(new Uint8Array(8)), ticketId = crypto.getRandomValues(new Uint8Array(8));
    const signed = concat(
      new Uint8Array([VERSION, TICKET]), be(now, 4), be(LIFETIME, 2), nonce, unhex(c.certificate),
      ticketId, be(PRODUCT, 2), be(now, 4), be(now + LIFETIME, 4), new Uint8Array([0])); // no route: any bus
    const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, c.privateKey, concat(DOMAIN, signed)));
    return { text: "TS:" + base45(concat(signed, signature)), expires: now + LIFETIME };
  }

  function countdown() {
    const left = Math.max(0, Math.round(expires - Date.now() / 1000));
    status.textContent = left ? `Valid for ${left} s · refreshes by itself` : "Refreshing…";
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const made = await ticket(await card());
      box.replaceChildren(window.tapstackQr.svg(made.text, "Ride code for the validator"));
      box.dataset.text = made.text;
      expires = made.expires;
      countdown();
      timer = setTimeout(refresh, REFRESH * 1000);
    } catch (e) {
      box.replaceChildren();
      box.dataset.text = "";
      status.textContent = e && e.message && !/Ed25519|algorithm/i.test(e.message)
        ? e.message : "This browser cannot sign ride codes (it has no Ed25519 in WebCrypto). Use a travel card.";
      status.classList.add("bad");
    }
  }

  ticking = setInterval(countdown, 1000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  window.addEventListener("pagehide", () => { clearTimeout(timer); clearInterval(ticking); });
  refresh();
})();
