// The live stream of an open experiment page: each look the analysis worker publishes
// (server-sent events from the estimates topic) redraws the verdict and the scorecard
// (htmx fetches them again: the page's own template over the API's document).
document.querySelectorAll("[data-live]").forEach(function (el) {
  var source = new EventSource(el.dataset.live);
  source.addEventListener("look", function (e) {
    el.textContent = "new look as of " + JSON.parse(e.data).as_of;
    htmx.trigger(document.body, "look");
  });
});
