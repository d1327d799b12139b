// The copy buttons of a version's snippets: the only script of the web view, loaded from
// this server (the Content-Security-Policy allows no inline script). A browser gives the
// clipboard to pages of https (or localhost) only: elsewhere the snippet is selected, for
// the reader's own Ctrl+C.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var block = document.getElementById(button.dataset.copy);
      var shown = function (label) {
        button.textContent = label;
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      };
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(block);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        shown("Selected: Ctrl+C");
      };
      if (!navigator.clipboard) {
        select();
        return;
      }
      navigator.clipboard.writeText(block.textContent).then(function () {
        shown("Copied");
      }, select);
    });
  });
});
