/**
 * The live-progress page served at `/`: plain HTML and script, no framework. It connects to
 * `/v1/ws` with the token from the URL fragment (`#token=…`), from the sign-in form, or — when the
 * gateway runs with development tokens — from `/dev/token?user_id=…`; it keeps the last cursor and
 * resumes with it after a disconnect, and shows each course's progress bar moving as events arrive.
 */

/** The page's HTML; `devTokens` shows the development sign-in. */
export function progressPage(devTokens: boolean): string {
  return PAGE.replace("__DEV_TOKENS__", devTokens ? "true" : "false");
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nerve · my progress</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2433; background: #f4f6fb; }
  body { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  #status { font-size: .85rem; color: #5b6478; margin-bottom: 1rem; }
  #status.live::before { content: "●"; color: #1a9c5b; margin-right: .35rem; }
  #status.down::before { content: "●"; color: #c0392b; margin-right: .35rem; }
  [hidden] { display: none !important; }
  form { display: flex; gap: .5rem; margin-bottom: 1rem; }
  input { flex: 1; padding: .45rem .6rem; border: 1px solid #c9cfdc; border-radius: 6px; }
  button { padding: .45rem .8rem; border: 0; border-radius: 6px; background: #3557d4; color: #fff; cursor: pointer; }
  button:disabled { background: #9aa6c8; cursor: default; }
  .course { background: #fff; border-radius: 10px; padding: .9rem 1rem; margin-bottom: .75rem; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  .row { display: flex; justify-content: space-between; align-items: baseline; gap: 1rem; }
  .name { font-weight: 600; }
  .badge { font-size: .75rem; padding: .1rem .45rem; border-radius: 999px; background: #e7ecfb; color: #3557d4; }
  .badge.completed { background: #ddf5e8; color: #147a47; }
  .badge.revoked, .badge.expired { background: #fbe4e1; color: #a83224; }
  .bar { height: .7rem; background: #e6e9f2; border-radius: 999px; overflow: hidden; margin: .6rem 0 .4rem; }
  .fill { height: 100%; width: 0; background: linear-gradient(90deg, #3557d4, #5d7df0); transition: width .4s ease; }
  .course.completed .fill { background: linear-gradient(90deg, #1a9c5b, #35c17b); }
  .meta { display: flex; justify-content: space-between; font-size: .85rem; color: #5b6478; }
  #empty { color: #5b6478; }
</style>
</head>
<body>
<h1>My courses</h1>
<div id="status" class="down">not connected</div>
<form id="signin" hidden><input id="user" placeholder="user id (development sign-in)" autocomplete="off"><button>Sign in</button></form>
<form id="tokenform" hidden><input id="token" placeholder="paste an access token" autocomplete="off"><button>Connect</button></form>
<div id="courses"></div>
<p id="empty" hidden>No courses yet.</p>
<script>
(() => {
  const DEV_TOKENS = __DEV_TOKENS__;
  const $ = (id) => document.getElementById(id);
  const records = new Map();
  let token = new URLSearchParams(location.hash.slice(1)).get("token") || new URLSearchParams(location.search).get("token");
  let cursor = null, ws = null, retry = 500, requests = 0;

  function setStatus(text, live) { const s = $("status"); s.textContent = text; s.className = live ? "live" : "down"; }

  function render() {
    const list = $("courses");
    $("empty").hidden = records.size > 0;
    for (const r of [...records.values()].sort((a, b) => a.course_id.localeCompare(b.course_id))) {
      let el = document.getElementById("c-" + r.access_id);
      if (!el) {
        el = document.createElement("div");
        el.id = "c-" + r.access_id;
        el.className = "course";
        el.dataset.courseId = r.course_id;
        el.innerHTML = '<div class="row"><span class="name"></span><span class="badge"></span></div>' +
          '<div class="bar"><div class="fill"></div></div>' +
          '<div class="meta"><span class="pct"></span><button class="step">+10%</button></div>';
        el.querySelector(".name").textContent = r.course_id;
        el.querySelector(".step").addEventListener("click", () => send(r.course_id, Math.min(100, (records.get(r.access_id)?.progress ?? 0) + 10)));
        list.appendChild(el);
      }
      const state = r.completed ? "completed" : r.status;
      el.classList.toggle("completed", r.completed);
      el.dataset.progress = String(r.progress);
      el.querySelector(".fill").style.width = r.progress + "%";
      el.querySelector(".pct").textContent = r.progress + "%";
      const badge = el.querySelector(".badge");
      badge.textContent = state;
      badge.className = "badge " + state;
      el.querySelector(".step").disabled = r.status !== "active" || r.progress >= 100;
    }
  }

  function apply(e) {
    const p = e.payload, prev = records.get(p.access_id);
    if (prev && e.aggregate_version <= prev.version) return;
    const r = prev ? { ...prev } : { access_id: p.access_id, user_id: p.user_id, course_id: p.course_id, status: "active", progress: 0, completed: false, expires_at: null, order_id: null };
    if (e.event_type === "CourseAccessGranted") { r.status = "active"; r.expires_at = p.expires_at; r.order_id = p.order_id ?? null; }
    if (e.event_type === "AccessRevoked") r.status = "revoked";
    if (e.event_type === "AccessExpired") r.status = "expired";
    if (e.event_type === "ProgressUpdated") r.progress = p.progress;
    if (e.event_type === "CourseCompleted") r.completed = true;
    r.version = e.aggregate_version;
    records.set(p.access_id, r);
  }

  function send(course_id, progress) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "UpdateProgress", request_id: "page-" + (++requests), course_id, progress }));
  }

  function connect() {
    const url = new URL("/v1/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", token);
    if (cursor) url.searchParams.set("cursor", cursor);
    setStatus("connecting…", false);
    ws = new WebSocket(url);
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.type === "welcome") { records.clear(); $("courses").textContent = ""; for (const r of f.progress) records.set(r.access_id, r); cursor = f.cursor; setStatus("live as " + f.user_id, true); retry = 500; }
      else if (f.type === "event") { apply(f.event); cursor = f.cursor; }
      else if (f.type === "ack" && !f.ok) setStatus("live · " + f.error.message, true);
      else if (f.type === "reset") cursor = null;
      render();
    };
    ws.onopen = () => { if (cursor) setStatus("live (resumed)", true); };
    ws.onclose = (e) => {
      if (e.code === 4401) { setStatus("signed out: token expired or invalid", false); showSignIn(); return; }
      if (e.code === 4408 && e.reason) cursor = e.reason;
      setStatus("reconnecting…", false);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  function showSignIn() { if (DEV_TOKENS) $("signin").hidden = false; else $("tokenform").hidden = false; }

  $("signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/dev/token?user_id=" + encodeURIComponent($("user").value.trim()));
    if (!r.ok) { setStatus("sign-in failed", false); return; }
    token = (await r.json()).token; $("signin").hidden = true; connect();
  });
  $("tokenform").addEventListener("submit", (ev) => { ev.preventDefault(); token = $("token").value.trim(); $("tokenform").hidden = true; connect(); });
  if (token) connect(); else showSignIn();
})();
</script>
</body>
</html>
`;
