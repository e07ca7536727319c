-- wrk script of bench/run.py: method and body from the environment, every status counted,
-- one JSON line of results at the end (wrk's own text report stays above it).
--
--   WRK_METHOD=POST WRK_BODY='{"title":"x"}' wrk -s bench/wrk.lua -H 'Authorization: ...' URL
--
-- Headers come from wrk's -H flags. Statuses are counted per thread in a global table and
-- merged in done() through thread:get() (the pattern of wrk's scripts/setup.lua), so a 304
-- or a 429 is seen by name instead of hiding in wrk's "Non-2xx or 3xx" line.

wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout,
    table.concat(parts, ", ")
  ))
end
