-- wrk script for benchmarks/web.py: each thread sends its own slice of prepared requests.
--
--   wrk -t T -c C -d D -s wrk_prepared.lua URL -- FILE T MODE
--
-- FILE holds one request a line: METHOD<TAB>PATH<TAB>COOKIE<TAB>BODY (the body form-encoded).
-- MODE "once": every line is sent at most once (each diary submit is its own participant's real
-- form, so a resend would be an idempotent replay, not a new entry); a thread that runs out
-- counts it in `exhausted` and the benchmark discards the run. MODE "cycle": the lines repeat
-- (the bare app's INSERTs, and the Today page).
-- Both sides of a comparison go through this same script, so the client's cost is the same.

local threads = {}
local created = 0

function setup(thread)
  thread:set("id", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  local file, count, mode = args[1], tonumber(args[2]), args[3]
  cycle = mode == "cycle"
  prepared = {}
  local n = 0
  for line in io.lines(file) do
    if n % count == id then
      local method, path, cookie, body = line:match("^(%S+)\t(%S+)\t([^\t]*)\t(.*)$")
      local headers = {}
      if cookie ~= "" then
        headers["Cookie"] = cookie
      end
      if method == "POST" then
        headers["Content-Type"] = "application/x-www-form-urlencoded"
      end
      table.insert(prepared, wrk.format(method, path, headers, body ~= "" and body or nil))
    end
    n = n + 1
  end
  index, exhausted = 0, 0
  ok, redirects, client_errors, server_errors = 0, 0, 0, 0
end

function request()
  index = index + 1
  if index > #prepared then
    if cycle then
      index = 1
    else
      exhausted = exhausted + 1
      index = #prepared
    end
  end
  return prepared[index]
end

function response(status, headers, body)
  if status >= 500 then
    server_errors = server_errors + 1
  elseif status >= 400 then
    client_errors = client_errors + 1
  elseif status >= 300 then
    redirects = redirects + 1
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local totals = { ok = 0, redirects = 0, client_errors = 0, server_errors = 0, exhausted = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d p50_us=%d p99_us=%d ok=%d redirects=%d client_errors=%d "
      .. "server_errors=%d exhausted=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    totals.ok, totals.redirects, totals.client_errors, totals.server_errors, totals.exhausted,
    errors.connect + errors.read + errors.write + errors.timeout
  ))
end
