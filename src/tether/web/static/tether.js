// A running run's timeline grows as its events are recorded (server-sent events).
document.addEventListener("DOMContentLoaded", () => {
  const timeline = document.querySelector("[data-live]");
  if (!timeline) return;
  const source = new EventSource(timeline.dataset.live);
  source.addEventListener("row", (event) => {
    timeline.insertAdjacentHTML("beforeend", event.data);
    htmx.process(timeline.lastElementChild);
  });
  source.addEventListener("status", (event) => {
    const badge = document.getElementById("status");
    if (badge && badge.textContent !== event.data) {
      badge.textContent = event.data;
      badge.className = "badge " + event.data;
    }
  });
  // Once the run has moved on (decided, finished), the rest of the page is out of date: reload it.
  source.addEventListener("end", () => {
    source.close();
    const badge = document.getElementById("status");
    if (badge && badge.textContent !== timeline.dataset.status) location.reload();
  });
});
