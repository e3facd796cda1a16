-- wrk script: keep-alive clients that think between requests.
--
--   wrk -t1 -c N -d 60s -s think.lua URL -- THINK_MIN_MS THINK_MAX_MS FIRST_MAX_MS SEED N
--
-- Each connection sends its first request within FIRST_MAX_MS of connecting (HAProxy
-- answers 408 to a new connection that stays silent for `timeout http-request`), then
-- waits a uniform THINK_MIN_MS..THINK_MAX_MS before each next one. done() prints
-- machine-readable lines (KIT_*) that benchmarks/loadtest.py merges across processes.
-- No response() callback: it would cost a Lua call per answer; loadtest.py counts the
-- status codes in HAProxy's access log instead.

local think_min, think_max, first_max = 0, 0, 0
local connections = 0
local delays = 0
function init(args)
  think_min = tonumber(args[1] or "0")
  think_max = tonumber(args[2] or "0")
  first_max = tonumber(args[3] or "0")
  math.randomseed(tonumber(args[4] or "1"))
  -- One thread per wrk process: the first N delays are the N connections' first requests.
  connections = tonumber(args[5] or "0")
end

function delay()
  delays = delays + 1
  if delays <= connections then
    return math.random(0, first_max)
  end
  return math.random(think_min, think_max)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "KIT_SUMMARY requests=%d duration_us=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status))
  local points = {}
  for p = 1, 99 do table.insert(points, p) end
  for p = 991, 999 do table.insert(points, p / 10) end
  table.insert(points, 99.99)
  for _, p in ipairs(points) do
    io.write(string.format("KIT_Q %.2f %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("KIT_MAX %d\n", latency.max))
end
