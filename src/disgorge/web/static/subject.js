// The subject page's "reveal the photos" button: toggles the thumbnails' blur in place.
// Without JavaScript the same button submits ?reveal=1 and the page comes back unblurred.
(function () {
  "use strict";
  const button = document.getElementById("reveal-photos");
  if (!button || !button.form) return;
  button.form.addEventListener("submit", function (event) {
    event.preventDefault();
    const reveal = button.getAttribute("aria-pressed") !== "true";
    document.querySelectorAll("#photos img.thumb").forEach(function (img) {
      img.classList.toggle("blurred", !reveal);
    });
    button.setAttribute("aria-pressed", reveal ? "true" : "false");
    button.textContent = reveal ? "Blur the photos" : "Reveal the photos";
    const next = button.form.querySelector("input[name=reveal]");
    if (next) next.value = reveal ? "0" : "1";
  });
})();
