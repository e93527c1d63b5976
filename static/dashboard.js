// bootfleet dashboard: deployments, nodes and events, live, from the operator API.
// Plain JavaScript, no build step, no third-party scripts. Everything shown is
// put into the page with textContent, never as HTML.
(function () {
  "use strict";

  const FORWARD = ["registered", "provisioning", "booting", "configuring", "installing", "rebooting", "ready"];
  const STAGES = FORWARD.concat(["failed", "deprovisioning", "deleted"]);
  const TOKEN_KEY = "bootfleet.adminToken"; // sessionStorage: this tab only
  const API_KEY = "bootfleet.apiBase"; // localStorage: remembered per browser
  const PAGE_SIZE = 100;
  const MAX_EVENTS = 200;
  const EVENTS_PAGE = 500;

  const cfg = window.BOOTFLEET_DASHBOARD || {};
  const params = new URLSearchParams(location.search);
  const POLL_MS = clamp(Number(params.get("poll")) || cfg.pollMs || 2000, 200, 60000);
  const REFRESH_MS = clamp(Number(params.get("refresh")) || cfg.refreshMs || 15000, 1000, 600000);

  const state = {
    api: initialApiBase(),
    token: sessionStorage.getItem(TOKEN_KEY),
    since: null, // the `next` of the last /status/events answer
    events: [], // newest first
    deployments: [], // [{deployment, status}]
    standalone: null, // /status/standalone: the nodes outside every deployment
    unknown: { items: [], total: 0 }, // /config/api/v1/unknown: machines that tried to boot
    nodes: [],
    nodesTotal: 0,
    offset: 0,
    names: new Map(), // node id -> hostname
    deploymentNames: new Map(), // deployment id -> name
    stuck: new Map(), // node id -> stuck entry from status
    pollTimer: null,
    refreshTimer: null,
    refreshing: null,
    refreshAgain: false,
    who: null, // /config/api/v1/whoami: {name, role}; what the page offers follows the role
  };
  const ROLES = ["metrics", "viewer", "operator", "admin"]; // each may do what the ones before it may
  const may = (role) => !!state.who && ROLES.indexOf(state.who.role) >= ROLES.indexOf(role);

  const $ = (id) => document.getElementById(id);

  function clamp(n, lo, hi) {
    return Math.min(hi, Math.max(lo, n));
  }

  function cleanBase(url) {
    return String(url || "").trim().replace(/\/+$/, "");
  }

  // A link's ?api= is only offered on the sign-in form: the admin token goes to another
  // host only after the operator has seen that host there and signed in to it.
  function linkApiBase() {
    return cleanBase(params.get("api") || "");
  }

  function initialApiBase() {
    const own = location.origin && location.origin !== "null" ? location.origin : "";
    return cleanBase(localStorage.getItem(API_KEY) || cfg.apiBase || own);
  }

  // --- the API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, query, token, method) {
    const url = new URL(state.api + path);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    }
    let resp;
    try {
      resp = await fetch(url, {
        method: method || "GET",
        headers: { Authorization: "Bearer " + (token || state.token), Accept: "application/json" },
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, `cannot reach ${state.api}: is the URL right, and does the API allow this origin (BOOTFLEET_CORS_ORIGIN)?`);
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      throw new ApiError(resp.status, (body && body.error) || `${resp.status} ${resp.statusText} from ${path}`);
    }
    return body;
  }

  // 401: no or a malformed token; 403: a wrong token (or the operator API is off).
  const refused = (e) => e instanceof ApiError && (e.status === 401 || e.status === 403);

  function handleError(e) {
    if (refused(e)) {
      signOut(`The token was refused: ${e.message}`);
      return;
    }
    showError(e.message || String(e));
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = !message;
  }

  // --- small DOM helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function stageChip(stage) {
    return el("span", { class: `stage stage-${STAGES.includes(stage) ? stage : "other"}`, text: stage || "?", "data-stage": stage });
  }

  function shortId(id) {
    return id ? String(id).slice(0, 8) : "";
  }

  function nodeName(id) {
    return state.names.get(id) || `node ${shortId(id)}`;
  }

  function nodeLink(id, text) {
    return el("a", { href: `#/nodes/${encodeURIComponent(id)}`, text: text || nodeName(id) });
  }

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function duration(iso) {
    return iso ? ago(iso).replace(/ ago$/, "") : "";
  }

  // A time that keeps itself current (see tick()).
  function timeEl(iso, kind) {
    const t = el("time", { dateTime: iso || "", title: iso ? new Date(iso).toLocaleString() : "", "data-rel": kind || "ago" });
    t.textContent = kind === "duration" ? duration(iso) : ago(iso);
    return t;
  }

  function clock(iso) {
    const d = new Date(iso);
    return el("time", { dateTime: iso, title: d.toLocaleString(), text: d.toLocaleTimeString([], { hour12: false }) });
  }

  function tick() {
    for (const t of document.querySelectorAll("time[data-rel]")) {
      const iso = t.dateTime;
      t.textContent = t.dataset.rel === "duration" ? duration(iso) : ago(iso);
    }
  }

  // --- views -------------------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const node = hash.match(/^\/nodes\/([^/?]+)/);
    if (node) return { view: "node", id: decodeURIComponent(node[1]) };
    const query = new URLSearchParams(hash.split("?")[1] || "");
    return { view: "overview", deployment: query.get("deployment") || "", stage: query.get("stage") || "" };
  }

  function show(view) {
    for (const id of ["signin", "overview", "node-page"]) $(id).hidden = id !== view;
    const signedIn = view !== "signin";
    $("sign-out").hidden = !signedIn;
    $("live").hidden = !signedIn;
    $("api-host").textContent = signedIn ? state.api.replace(/^https?:\/\//, "") : "";
    $("who").textContent = signedIn && state.who ? `${state.who.name} (${state.who.role})` : "";
    $("who").hidden = !(signedIn && state.who);
  }

  function render() {
    if (!state.token) return;
    const r = route();
    if (r.view === "node") {
      show("node-page");
    } else {
      show("overview");
      renderDeployments();
      renderUnknown();
      renderNodes();
    }
    renderEvents();
  }

  const OUTSIDE = "-"; // the deployment filter's value for the nodes outside every deployment
  const STUCK = "stuck"; // the stage filter's value for the nodes past their stage's timeout

  function renderDeployments() {
    const box = $("deployments");
    box.replaceChildren();
    const standalone = state.standalone && state.standalone.nodes ? state.standalone : null;
    if (!state.deployments.length && !standalone) {
      box.append(el("p", { class: "muted", text: "No deployments yet. Create one: bootfleet deployment create --name rack-a --profile demo" }));
      return;
    }
    const current = route().deployment;
    for (const { deployment, status } of state.deployments) {
      box.append(card(deployment.name, deployment.name, status, deployment, current));
    }
    // The nodes outside deployments, summarised as a deployment is (stuck and failed flagged too).
    if (standalone) box.append(card(OUTSIDE, "Outside deployments", standalone, null, current));
  }

  function card(key, title, status, deployment, current) {
    const counts = (status && status.counts) || {};
    const total = (status && status.nodes) || 0;
    const link = (stage) => `#/?deployment=${encodeURIComponent(key)}` + (stage ? `&stage=${stage}` : "");
    const box = el("article", {
      class: "deployment" + (deployment ? "" : " standalone") + (current === key ? " selected" : "") + (status && status.done ? " done" : ""),
      "data-deployment": key,
    });
    const head = el("div", { class: "deployment-head" }, el("a", { class: "deployment-name", href: link(""), text: title }));
    if (deployment && deployment.state !== "active") head.append(el("span", { class: "tag", text: deployment.state }));
    box.append(head);
    const ready = (status && status.ready) || 0;
    const percent = status ? status.percent : 0;
    box.append(el("p", { class: "deployment-summary" },
      el("strong", { class: "ready-count", text: `${ready} of ${total}` }), " ready",
      el("span", { class: "percent", text: ` · ${percent}%` }),
      deployment && deployment.count ? el("span", { class: "muted", text: ` · ${deployment.count} wanted` }) : null));

    const bar = el("div", { class: "bar", role: "img", "aria-label": STAGES.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`).join(", ") || "no nodes" });
    for (const stage of STAGES) {
      if (!counts[stage] || stage === "deleted") continue;
      const seg = el("span", { class: `seg stage-${stage}`, title: `${stage}: ${counts[stage]}`, "data-stage": stage });
      seg.style.width = `${(100 * counts[stage]) / total}%`;
      bar.append(seg);
    }
    box.append(bar);

    const legend = el("ul", { class: "legend" });
    for (const stage of STAGES) {
      if (!counts[stage]) continue;
      legend.append(el("li", { "data-stage": stage },
        el("a", { href: link(stage) }, stageChip(stage), el("span", { class: "count", text: String(counts[stage]) }))));
    }
    box.append(legend);

    const failed = (status && status.failed) || [];
    const stuck = (status && status.stuck) || [];
    if (failed.length || stuck.length) {
      const alerts = el("p", { class: "alerts" });
      if (failed.length) alerts.append(el("a", { class: "alert-failed", href: link("failed"), text: `${failed.length} failed` }));
      if (stuck.length) alerts.append(el("a", { class: "alert-stuck", href: link(STUCK), text: `${stuck.length} stuck` }));
      box.append(alerts);
    }
    return box;
  }

  function renderUnknown() {
    const { items, total } = state.unknown;
    $("unknown-panel").hidden = !total;
    $("unknown-summary").textContent = total
      ? `${total} machine${total === 1 ? "" : "s"} asked to boot with a MAC no node has. Adopt one: bootfleet node adopt MAC --profile PROFILE`
      : "";
    $("unknown").querySelector("tbody").replaceChildren(...items.map((m) => el("tr", { class: "unknown", "data-mac": m.mac },
      el("td", { class: "mac", "data-label": "MAC", text: m.mac }),
      el("td", { class: "attempts", "data-label": "Attempts", text: String(m.attempts) }),
      el("td", { class: "seen", "data-label": "Last seen" }, timeEl(m.last_seen)),
      el("td", { class: "first", "data-label": "First seen" }, timeEl(m.first_seen)),
      el("td", { class: "address", "data-label": "Address", text: m.last_address || "—" }),
    )));
  }

  function renderFilters() {
    const r = route();
    const dep = $("filter-deployment");
    const wanted = ["", ...state.deployments.map((d) => d.deployment.name)];
    if (state.standalone && state.standalone.nodes) wanted.push(OUTSIDE);
    if (r.deployment && !wanted.includes(r.deployment)) wanted.push(r.deployment);
    const label = (name) => (name === OUTSIDE ? "outside deployments" : name || "all");
    dep.replaceChildren(...wanted.map((name) => el("option", { value: name, text: label(name) })));
    dep.value = r.deployment;
    const stage = $("filter-stage");
    if (stage.options.length === 1) {
      // "stuck": the nodes past their stage's timeout, whatever the stage (the API's ?stuck=true).
      stage.append(el("option", { value: STUCK, text: "stuck (past its timeout)" }));
      for (const s of STAGES) stage.append(el("option", { value: s, text: s }));
    }
    stage.value = r.stage;
  }

  function renderNodes() {
    renderFilters();
    const body = $("nodes").querySelector("tbody");
    body.replaceChildren();
    for (const n of state.nodes) {
      // The status answers list 100 stuck nodes each; the node list flags every one.
      const stuck = state.stuck.get(n.id) || (n.stuck ? { stage: n.stage, seconds_in_stage: Math.round((Date.now() - Date.parse(n.stage_changed_at)) / 1000) } : null);
      const row = el("tr", {
        class: ["node", n.stage === "failed" ? "failed" : "", stuck ? "stuck" : ""].filter(Boolean).join(" "),
        "data-node-id": n.id,
        "data-stage": n.stage,
      });
      const host = el("td", { class: "host", "data-label": "Host" }, nodeLink(n.id, n.hostname || `node ${shortId(n.id)}`));
      const stageCell = el("td", { class: "stage-cell", "data-label": "Stage" }, stageChip(n.stage));
      if (stuck) stageCell.append(el("span", { class: "tag stuck-tag", text: "stuck", title: `in ${stuck.stage} for ${stuck.seconds_in_stage} s` }));
      row.append(
        host,
        stageCell,
        el("td", { class: "ip", "data-label": "IP", text: n.ip || "—" }),
        el("td", { class: "mac", "data-label": "MAC", text: (n.macs || []).join(", ") || "—" }),
        el("td", { class: "dep", "data-label": "Deployment", text: state.deploymentNames.get(n.deployment_id) || "—" }),
        el("td", { class: "seen", "data-label": "Last seen" }, timeEl(n.last_seen)),
        el("td", { class: "since", "data-label": "In stage" }, timeEl(n.stage_changed_at, "duration")),
      );
      body.append(row);
    }
    const r = route();
    const shown = state.nodes.length;
    const where = r.deployment === OUTSIDE ? "outside deployments" : r.deployment && `in ${r.deployment}`;
    const what = [where, r.stage && `${r.stage}`].filter(Boolean).join(", ");
    $("nodes-summary").textContent = shown
      ? `${state.offset + 1}–${state.offset + shown} of ${state.nodesTotal} nodes${what ? " (" + what + ")" : ""}`
      : `No nodes${what ? " (" + what + ")" : ""}.`;
    $("prev-page").hidden = state.offset === 0;
    $("next-page").hidden = state.offset + shown >= state.nodesTotal;
  }

  function renderEvents() {
    const list = $("events");
    if (!list || $("overview").hidden) return;
    list.replaceChildren(...state.events.map(eventItem));
    $("events-empty").hidden = state.events.length > 0;
  }

  function eventItem(e) {
    const li = el("li", { class: `event kind-${e.kind}` + (e.stage === "failed" ? " failed" : ""), "data-event-id": e.id });
    li.append(clock(e.created_at), " ");
    if (e.node_id && e.hostname) state.names.set(e.node_id, e.hostname); // the event names its node (issue 25)
    if (e.node_id) li.append(nodeLink(e.node_id), " ");
    else if (e.deployment_id) li.append(el("strong", { text: state.deploymentNames.get(e.deployment_id) || "deployment" }), " ");
    if (e.stage) li.append(stageChip(e.stage), " ");
    li.append(el("span", { class: "message", text: e.message }), " ", el("span", { class: "source", text: e.source }));
    return li;
  }

  // --- node page ---------------------------------------------------------------

  async function loadNode(id) {
    const [node, history] = await Promise.all([api(`/status/nodes/${encodeURIComponent(id)}`), api(`/status/nodes/${encodeURIComponent(id)}/events`)]);
    if (route().id !== id) return;
    state.names.set(node.id, node.hostname || `node ${shortId(node.id)}`);
    renderNode(node, history.events || []);
  }

  function inventoryText(inv) {
    if (!inv) return "";
    const gib = (b) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    const disks = (inv.disks || []).map((d) => `${d.name || "disk"} ${gib(d.size_bytes)}${d.model ? " " + d.model : ""}${d.serial ? " #" + d.serial : ""}`);
    const nics = (inv.nics || []).map((x) => `${x.mac}${x.driver ? " " + x.driver : ""}${x.speed_mbps ? " " + x.speed_mbps + " Mb/s" : ""}${x.link === false ? " (no link)" : ""}`);
    const sys = inv.system || {};
    return [`${inv.cpus} CPUs`, `${(inv.memory_mib / 1024).toFixed(1)} GiB memory`, `disks: ${disks.join(", ") || "none"}`,
      `NICs: ${nics.join(", ") || "none"}`, `${(inv.firmware && inv.firmware.mode) || "unknown"} firmware` + (inv.firmware && inv.firmware.secure_boot ? ", secure boot" : ""),
      [sys.vendor, sys.product, sys.serial].filter(Boolean).join(" ")].filter(Boolean).join(" · ");
  }

  function renderNode(n, events) {
    show("node-page");
    $("node-title").textContent = n.hostname || `node ${shortId(n.id)}`;
    $("node-stage").replaceChildren(stageChip(n.stage));
    const page = $("node-page");
    page.dataset.stage = n.stage;
    page.classList.toggle("failed", n.stage === "failed");

    const alert = $("node-alert");
    const stuck = state.stuck.get(n.id);
    const lastStage = [...events].reverse().find((e) => e.stage === n.stage);
    if (n.stage === "failed") {
      alert.textContent = `Failed ${ago(n.stage_changed_at)}: ${lastStage ? lastStage.message : ""}`;
      alert.className = "alert alert-failed";
      alert.hidden = false;
    } else if (n.stage === "held") {
      // Issue 22: its inventory fails its profile's requirements; every reason listed.
      const reasons = (n.requirements && n.requirements.failures) || [];
      alert.textContent = `Held: its inventory fails its profile's requirements: ${reasons.join("; ")}. Fix the profile, or override this node (bootfleet node override).`;
      alert.className = "alert alert-held";
      alert.hidden = false;
    } else if (stuck) {
      alert.textContent = `Stuck: in ${stuck.stage} for ${duration(n.stage_changed_at)}, past its timeout.`;
      alert.className = "alert alert-stuck";
      alert.hidden = false;
    } else {
      alert.hidden = true;
    }

    // The install path; a stage the node went through has its time (some are skipped).
    const times = n.stage_times || {};
    const steps = $("node-steps");
    steps.replaceChildren();
    for (const s of FORWARD) {
      const cls = ["step", s === n.stage ? "current" : "", times[s] ? "done" : ""].filter(Boolean).join(" ");
      steps.append(el("li", { class: cls, "data-stage": s }, el("span", { class: "step-name", text: s }),
        times[s] ? el("span", { class: "step-time" }, clock(times[s])) : null));
    }

    const details = [
      ["ID", n.id],
      ["Stage", n.stage],
      ["In stage since", n.stage_changed_at ? new Date(n.stage_changed_at).toLocaleString() : ""],
      ["Hostname", n.hostname],
      ["IP", n.ip],
      ["MAC", (n.macs || []).join(", ")],
      ["UUID", n.uuid],
      ["Serial", n.serial],
      ["Instance", n.instance_id],
      ["Deployment", state.deploymentNames.get(n.deployment_id) || n.deployment_id],
      ["Labels", Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
      ["Last seen", n.last_seen ? `${ago(n.last_seen)} (${new Date(n.last_seen).toLocaleString()})` : "never"],
      ["Token version", n.token_version],
      ["Created", n.created_at ? new Date(n.created_at).toLocaleString() : ""],
      // Issue 22: the last inventory and the requirement check.
      ["Inventory", inventoryText(n.inventory)],
      ["Inventory at", n.inventory_at ? new Date(n.inventory_at).toLocaleString() : ""],
      ["Requirements", n.requirements ? ((n.requirements.failures || []).length ? `not met: ${n.requirements.failures.join("; ")}` : "met") + (n.requirements.override ? " (overridden by an operator)" : "") : ""],
    ];
    // Only what this token's role may do is offered: a viewer sees no reinstall.
    const reinstall = $("node-reinstall");
    reinstall.hidden = !may("operator") || n.stage === "deleted" || n.stage === "deprovisioning";
    reinstall.dataset.node = n.id;
    $("node-details").replaceChildren(...details.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === null || v === undefined || v === "" ? "—" : String(v) })]));
    // Issue 22: an image write's progress, as the agent reports it (bytes of total).
    const w = n.install_progress;
    if (w && w.total) {
      const mib = (b) => (b / 2 ** 20).toFixed(1);
      $("node-details").append(el("dt", { text: "Image write" }), el("dd", { id: "node-write" },
        el("progress", { max: 100, value: w.percent || 0 }), ` ${w.percent}% (${mib(w.bytes)} of ${mib(w.total)} MiB)`));
    }

    $("timeline").replaceChildren(...events.map((e) => {
      const li = el("li", { class: "entry" + (e.stage === "failed" ? " failed" : ""), "data-event-id": e.id });
      li.append(el("div", { class: "when" }, clock(e.created_at), " ", el("span", { class: "muted", text: new Date(e.created_at).toLocaleDateString() })));
      const what = el("div", { class: "what" });
      if (e.stage) what.append(stageChip(e.stage), " ");
      what.append(el("span", { class: "message", text: e.message }), " ", el("span", { class: "source", text: `${e.kind} · ${e.source}` }));
      li.append(what);
      return li;
    }));
  }

  // --- loading ------------------------------------------------------------------

  async function loadDeployments() {
    const list = await api("/config/api/v1/deployments", { limit: 1000 });
    const live = (list.items || []).filter((d) => d.state !== "deleted");
    const statuses = await Promise.all(live.map((d) => api(`/status/deployments/${encodeURIComponent(d.id)}`).catch((e) => {
      if (refused(e)) throw e;
      return null; // deleted meanwhile
    })));
    state.deployments = live.map((deployment, i) => ({ deployment, status: statuses[i] }));
    state.deploymentNames = new Map((list.items || []).map((d) => [d.id, d.name]));
    [state.standalone, state.unknown] = await Promise.all([api("/status/standalone"), api("/config/api/v1/unknown", { limit: 50 })]);
    state.stuck = new Map();
    for (const s of [...statuses, state.standalone]) for (const n of (s && s.stuck) || []) state.stuck.set(n.id, n);
  }

  async function loadNodes() {
    const r = route();
    const filter = r.stage === STUCK ? { stuck: "true" } : { stage: r.stage };
    const page = await api("/config/api/v1/nodes", { deployment: r.deployment, ...filter, limit: PAGE_SIZE, offset: state.offset });
    state.nodes = page.items || [];
    state.nodesTotal = page.total || 0;
    for (const n of state.nodes) state.names.set(n.id, n.hostname || `node ${shortId(n.id)}`);
  }

  // One refresh at a time; a request for another while one runs makes it run once more.
  function refresh() {
    if (state.refreshing) {
      state.refreshAgain = true;
      return state.refreshing;
    }
    state.refreshing = (async () => {
      try {
        do {
          state.refreshAgain = false;
          const r = route();
          await loadDeployments();
          if (r.view === "node") await loadNode(r.id);
          else await loadNodes();
          render();
          showError("");
        } while (state.refreshAgain && state.token);
      } catch (e) {
        handleError(e);
      } finally {
        state.refreshing = null;
      }
    })();
    return state.refreshing;
  }

  // --- the live event stream ------------------------------------------------------

  async function poll() {
    state.pollTimer = null;
    if (!state.token) return;
    try {
      if (state.since === null) state.since = new Date(Date.now() - 3600 * 1000).toISOString(); // the last hour
      let since = state.since;
      const fresh = [];
      for (let pages = 0; pages < 10; pages++) {
        const answer = await api("/status/events", { since, limit: EVENTS_PAGE });
        const events = answer.events || [];
        if (!events.length) break; // keep asking from where we are (an empty answer's next may be 0)
        fresh.push(...events);
        since = state.since = answer.next;
        if (events.length < EVENTS_PAGE) break;
      }
      setLive(true);
      if (fresh.length) {
        state.events = fresh.slice(-MAX_EVENTS).reverse().concat(state.events).slice(0, MAX_EVENTS);
        renderEvents();
        await refresh();
      }
    } catch (e) {
      if (refused(e)) return handleError(e);
      setLive(false, e.message);
    } finally {
      if (state.token && !state.pollTimer) state.pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  function setLive(ok, why) {
    const live = $("live");
    live.classList.toggle("down", !ok);
    $("live-text").textContent = ok ? "live" : "reconnecting…";
    live.title = ok ? `polling every ${POLL_MS / 1000} s` : why || "";
  }

  // --- signing in and out -----------------------------------------------------------

  async function reinstallNode() {
    const id = $("node-reinstall").dataset.node;
    if (!id || !window.confirm("Reinstall this node? Its next boot installs it again.")) return;
    try {
      await api(`/config/api/v1/nodes/${encodeURIComponent(id)}/reinstall`, null, null, "POST");
      await loadNode(id);
    } catch (e) {
      handleError(e);
    }
  }

  async function start() {
    if (!state.who) {
      try {
        state.who = await api("/config/api/v1/whoami");
      } catch (e) {
        handleError(e);
        return;
      }
    }
    render();
    refresh();
    if (!state.pollTimer) poll();
    if (!state.refreshTimer) state.refreshTimer = setInterval(() => state.token && refresh(), REFRESH_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.who = null;
    state.since = null;
    state.events = [];
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    clearInterval(state.refreshTimer);
    state.refreshTimer = null;
    showError("");
    show("signin");
    $("api-input").value = state.api;
    $("token-input").value = "";
    const err = $("signin-error");
    err.textContent = message || "";
    err.hidden = !message;
  }

  async function signIn(event) {
    event.preventDefault();
    const base = cleanBase($("api-input").value);
    const token = $("token-input").value.trim();
    const err = $("signin-error");
    err.hidden = true;
    let url;
    try {
      url = new URL(base);
      if (!/^https?:$/.test(url.protocol)) throw new Error();
    } catch (e) {
      err.textContent = `API URL: expected http(s)://host[:port], got ${JSON.stringify(base)}`;
      err.hidden = false;
      return;
    }
    state.api = base;
    try {
      await api("/config/api/v1/deployments", { limit: 1 }, token); // the dashboard needs a viewer token or above
      state.who = await api("/config/api/v1/whoami", null, token);
    } catch (e) {
      err.textContent = refused(e) ? `The token was refused: ${e.message}` : e.message;
      err.hidden = false;
      return;
    }
    localStorage.setItem(API_KEY, base);
    sessionStorage.setItem(TOKEN_KEY, token);
    state.token = token;
    start();
  }

  function init() {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("node-reinstall").addEventListener("click", reinstallNode);
    $("filters").addEventListener("change", () => {
      const q = new URLSearchParams();
      if ($("filter-deployment").value) q.set("deployment", $("filter-deployment").value);
      if ($("filter-stage").value) q.set("stage", $("filter-stage").value);
      location.hash = "#/" + (q.toString() ? "?" + q : "");
    });
    $("prev-page").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - PAGE_SIZE);
      refresh();
    });
    $("next-page").addEventListener("click", () => {
      state.offset += PAGE_SIZE;
      refresh();
    });
    window.addEventListener("hashchange", () => {
      state.offset = 0;
      if (!state.token) return;
      render();
      refresh();
    });
    setInterval(tick, 5000);
    const linked = linkApiBase();
    if (linked && linked !== state.api) {
      signOut(`This link asks to use the API at ${linked}. Check it, then sign in to use it: ` +
        "your token is sent there only when you do.");
      $("api-input").value = linked;
    } else if (state.token) start();
    else signOut("");
  }

  init();
})();
