// JourneyAPI web pages: the one script of our own (GET /assets/app.js), loaded only by
// pages whose Content-Security-Policy allows it. Progressive touches only: every page
// works without it.
//
// Copy buttons: <button data-copy="ID" hidden> copies the value of the field #ID and says
// so in the element named by its aria-controls (a live region). The button stays hidden
// without JavaScript, where the read-only field can be selected and copied by hand.
(function () {
  "use strict";
  function say(status, text) {
    if (status) { status.textContent = text; }
  }
  function fallbackCopy(field) {
    field.focus();
    field.select();
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("aria-controls"));
    if (!field) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { say(status, "Copied to the clipboard."); };
      var failed = function () {
        if (fallbackCopy(field)) { done(); } else {
          say(status, "Could not copy: the key is selected, copy it with your keyboard.");
        }
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, failed);
      } else {
        failed();
      }
    });
  });
})();
