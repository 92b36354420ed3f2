// Shows each <time data-local> in the reader's own time zone and language,
// as the browser knows them. Without scripts the page says the time in UTC.
(function () {
  "use strict";
  var styles = {
    date: { dateStyle: "medium" },
    datetime: { dateStyle: "medium", timeStyle: "short" }
  };
  function localise(root) {
    var times = (root || document).querySelectorAll("time[data-local]");
    for (var i = 0; i < times.length; i++) {
      var time = times[i];
      var when = new Date(time.getAttribute("datetime"));
      var style = styles[time.getAttribute("data-local")];
      if (isNaN(when.getTime()) || !style || time.hasAttribute("data-localised")) continue;
      try {
        time.title = time.textContent.trim();
        time.textContent = new Intl.DateTimeFormat(undefined, style).format(when);
        time.setAttribute("data-localised", "");
      } catch (e) {
        // An old browser keeps the UTC text.
      }
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localise(event.target); });
})();
