// The fleet and robot pages of `nsm serve` (nsm/telemetry/dashboard.py): plain JavaScript,
// nothing to build. History from /v1/fleet and /v1/robots/{id} (per-minute rollups), live
// updates from /v1/stream (server-sent events read with fetch, so the token travels in a
// header; `update_data` events are the hub's own prediction messages).
const nsm = (() => {
  const KEY = "nsm_token";
  const OFFLINE_S = 10;

  function token() {
    const given = location.hash.match(/token=([^&]+)/);
    if (given) {  // a fragment never reaches the server's logs; keep it for this tab only
      sessionStorage.setItem(KEY, decodeURIComponent(given[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY);
  }

  function askToken(reason) {
    const form = document.getElementById("login");
    form.hidden = false;
    setStatus(reason, false);
    form.onsubmit = (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
      location.reload();
    };
  }

  function setStatus(text, live) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.className = "status " + (live ? "live" : "down");
  }

  async function getJSON(path) {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
    if (r.status === 401 || r.status === 403) {
      askToken(r.status === 401 ? "token needed" : "this token may not read this page");
      throw new Error(`${r.status}`);
    }
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    return r.json();
  }

  // Server-sent events over fetch; reconnects after 2 s when the stream ends.
  async function stream(path, onEvent) {
    for (;;) {
      try {
        const r = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
        if (!r.ok) throw new Error(`${r.status}`);
        setStatus("live", true);
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (data) onEvent(JSON.parse(data));
          }
        }
      } catch (e) {
        setStatus("reconnecting…", false);
      }
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  }

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const fixed = (v, digits, unit) => (v == null ? "–" : `${v.toFixed(digits)}${unit}`);

  function ago(iso) {
    if (!iso) return { text: "–", cls: "" };
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    const text = s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : new Date(iso).toLocaleString();
    return { text, cls: s < OFFLINE_S ? "on" : s < 120 ? "late" : "" };
  }

  // What an operator must see first: high collision risk, a battery about to run out.
  function alerts(robot) {
    const out = [];
    for (const p of robot.predictions || []) {
      if (p.unit === "probability" && p.value >= 0.5) out.push(p.message);
      if (p.unit === "s" && p.value < 600) out.push(p.message);
    }
    if (robot.battery != null && robot.battery < 20) out.push(`battery ${robot.battery.toFixed(0)}%`);
    return out;
  }

  function prediction(p) {
    const value = p.unit === "probability" ? `${(100 * p.value).toFixed(0)}%` : `${p.value.toFixed(0)} ${p.unit}`;
    const conf = p.confidence == null ? "" : ` (confidence ${(100 * p.confidence).toFixed(0)}%)`;
    return `${p.model} ${value}${conf}`;
  }

  // The newest prediction per model replaces the one before.
  function addPrediction(robot, p) {
    robot.predictions = (robot.predictions || []).filter((q) => q.model !== p.model).concat([p]);
    robot.predictions.sort((a, b) => a.model.localeCompare(b.model));
  }

  function fleetPage() {
    if (!token()) return askToken("token needed");
    const robots = new Map();
    let pending = false;
    const blank = (id) => ({ robot_id: id, last_seen: null, battery: null, loop_ms_p99: null, rows_per_s: null,
                             episodes_today: 0, predictions: [] });
    const render = () => {
      pending = false;
      const rows = [...robots.values()].map((r) => ({ r, alerts: alerts(r) }));
      rows.sort((a, b) => (b.alerts.length > 0) - (a.alerts.length > 0) || a.r.robot_id.localeCompare(b.r.robot_id));
      document.querySelector("#fleet tbody").innerHTML = rows.map(({ r, alerts: a }) => {
        const seen = ago(r.last_seen);
        return `<tr class="${a.length ? "alerting" : ""}" data-robot="${esc(r.robot_id)}">
          <td><a class="robot" href="/robots/${encodeURIComponent(r.robot_id)}">${esc(r.robot_id)}</a></td>
          <td><span class="dot ${seen.cls}"></span>${esc(seen.text)}</td>
          <td class="num">${r.battery == null ? "unknown" : fixed(r.battery, 0, "%")}</td>
          <td class="num">${fixed(r.loop_ms_p99, 1, " ms")}</td>
          <td class="num">${fixed(r.rows_per_s, 0, "")}</td>
          <td class="num">${r.episodes_today}</td>
          <td>${r.predictions.map((p) => `<span class="pred">${esc(prediction(p))}</span>`).join("")}</td>
          <td>${a.map((x) => `<span class="badge">${esc(x)}</span>`).join("")}</td></tr>`;
      }).join("");
      document.getElementById("empty").hidden = robots.size > 0;
      const online = [...robots.values()].filter((r) => ago(r.last_seen).cls === "on").length;
      const rate = [...robots.values()].reduce((s, r) => s + (ago(r.last_seen).cls === "on" ? r.rows_per_s || 0 : 0), 0);
      const alerting = rows.filter((x) => x.alerts.length).length;
      document.getElementById("summary").textContent =
        `${robots.size} robots · ${online} online · ${rate.toFixed(0)} rows/s · ${alerting} alerting`;
    };
    const later = () => { if (!pending) { pending = true; requestAnimationFrame(render); } };
    const load = async () => {
      const data = await getJSON("/v1/fleet");
      for (const r of data.robots) {
        const known = robots.get(r.robot_id);
        // live values (last seen, rows/s, battery) are newer than the last rolled-up minute
        robots.set(r.robot_id, known ? { ...r, ...pick(known, ["last_seen", "rows_per_s", "battery"]),
                                         predictions: known.predictions.length ? known.predictions : r.predictions } : r);
      }
      later();
    };
    load().catch(() => {});
    setInterval(() => load().catch(() => {}), 60000);
    setInterval(later, 1000);  // "n s ago" keeps counting
    stream("/v1/stream", (event) => {
      if (event.type === "fleet") {
        for (const live of event.robots) {
          const r = robots.get(live.robot_id) || blank(live.robot_id);
          Object.assign(r, live);
          robots.set(r.robot_id, r);
        }
      } else if (event.type === "update_data" && event.data.type === "ai_prediction") {
        const r = robots.get(event.data.robot_id) || blank(event.data.robot_id);
        addPrediction(r, event.data);
        robots.set(r.robot_id, r);
      }
      later();
    });
  }

  function pick(obj, keys) {
    return Object.fromEntries(keys.filter((k) => obj[k] != null).map((k) => [k, obj[k]]));
  }

  function chart(svg, points, unit) {
    const W = 600, H = 180, L = 48, B = 22;
    if (!points.length) {
      svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no rolled-up minutes yet</text>`;
      return;
    }
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 60000);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
    const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - 8);
    const Y = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - B - 8);
    const line = points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
    const time = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg.innerHTML = `<line x1="${L}" y1="${H - B}" x2="${W}" y2="${H - B}"/><line x1="${L}" y1="8" x2="${L}" y2="${H - B}"/>
      <text x="${L - 4}" y="14" text-anchor="end">${y1.toFixed(1)}</text>
      <text x="${L - 4}" y="${H - B}" text-anchor="end">${y0.toFixed(1)}</text>
      <text x="${L}" y="${H - 6}">${time(x0)}</text><text x="${W - 4}" y="${H - 6}" text-anchor="end">${time(x1)}</text>
      <polyline points="${line}"><title>${unit}</title></polyline>`;
  }

  function robotPage() {
    const id = decodeURIComponent(location.pathname.split("/").pop());
    document.getElementById("robot").textContent = id;
    document.title = `nsm ${id}`;
    if (!token()) return askToken("token needed");
    let predictions = [];
    const showPredictions = () => {
      document.getElementById("predictions").innerHTML = predictions.slice(0, 50).map((p) =>
        `<li>${esc(new Date(1000 * p.timestamps.sample).toLocaleTimeString())} · ${esc(prediction(p))} · ${esc(p.message)}</li>`,
      ).join("") || "<li class=muted>none yet</li>";
    };
    const load = async () => {
      const data = await getJSON(`/v1/robots/${encodeURIComponent(id)}`);
      const series = (key) => data.minutes.filter((m) => m[key] != null).map((m) => [Date.parse(m.minute), m[key]]);
      chart(document.getElementById("battery"), series("battery"), "%");
      chart(document.getElementById("loop"), series("loop_ms_p99"), "ms");
      predictions = data.predictions;
      showPredictions();
      document.getElementById("episodes").innerHTML = data.episodes.map((e) =>
        `<li>${esc(new Date(e.ended_at).toLocaleString())} · ${e.success == null ? "not judged" : e.success ? "success" : "failure"}
         · ${e.frames} frames · ${e.duration_s.toFixed(1)} s · ${esc(e.policy || "")}</li>`).join("") || "<li class=muted>none</li>";
      const last = data.minutes[data.minutes.length - 1];
      document.getElementById("summary").textContent = last
        ? `last minute: ${last.rows} rows · loop p99 ${fixed(last.loop_ms_p99, 1, " ms")}` : "no rolled-up minutes yet";
    };
    load().catch(() => {});
    setInterval(() => load().catch(() => {}), 60000);
    stream(`/v1/stream?robot_id=${encodeURIComponent(id)}`, (event) => {
      if (event.type === "update_data" && event.data.type === "ai_prediction") {
        predictions = [event.data, ...predictions];
        showPredictions();
      } else if (event.type === "fleet" && event.robots.length) {
        const r = event.robots[0];
        document.getElementById("summary").textContent =
          `live: ${r.rows_per_s.toFixed(0)} rows/s · last row ${ago(r.last_seen).text}` +
          (r.battery != null ? ` · battery ${r.battery.toFixed(0)}%` : "");
      }
    });
  }

  return { fleetPage, robotPage, alerts };
})();
