// Small helps on the wallet's pages. Every page works without them, as plain forms.
(function () {
  "use strict";

  // A form marked data-once is sent once: its button is disabled as it goes, so a double
  // tap sends one request (and the server pays once whatever arrives: the form's key).
  document.querySelectorAll("form[data-once]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach((button) => {
        button.textContent = form.dataset.once;
        setTimeout(() => { button.disabled = true; }, 0); // after the submission took the form
      });
    });
  });

  // The amount a payer types on a shop's code: the balance after paying it, as they type.
  const typed = document.querySelector("input.amount[data-balance]");
  const after = document.getElementById("balance-after");
  if (typed && after) {
    const exponent = Number(typed.dataset.exponent), currency = typed.dataset.currency;
    const minor = (text) => {
      const m = /^\s*(\d{1,12})(?:\.(\d*))?\s*$/.exec(text);
      if (!m || (m[2] || "").length > exponent) return null;
      return Number(m[1]) * 10 ** exponent + Number((m[2] || "").padEnd(exponent, "0") || 0);
    };
    const show = (amount) => {
      const sign = amount < 0 ? "-" : "", units = Math.abs(amount), scale = 10 ** exponent;
      const whole = Math.floor(units / scale), rest = String(units % scale).padStart(exponent, "0");
      return `${sign}${whole}${exponent ? "." + rest : ""} ${currency}`;
    };
    const update = () => {
      const amount = minor(typed.value);
      after.textContent = amount === null || amount === 0 ? "—" : show(Number(typed.dataset.balance) - amount);
      after.classList.toggle("bad", amount !== null && amount > Number(typed.dataset.balance));
    };
    typed.addEventListener("input", update);
    update();
  }

  // Quick amounts: a chip fills its input.
  document.querySelectorAll("button[data-fill]").forEach((chip) => {
    chip.addEventListener("click", () => {
      const input = document.getElementById(chip.dataset.fill);
      input.value = chip.dataset.value;
      input.dispatchEvent(new Event("input"));
    });
  });
})();
