-- wrk script for the load benchmark. With REQUESTS=<file>, each line is one request:
-- `PATH|Header: value|Header: value`, used round-robin; without it, GET / is sent.
-- At the end it prints one parseable line with requests, errors and latency percentiles.
local list = {}
local file = os.getenv("REQUESTS")
if file and file ~= "" then
  for line in io.lines(file) do
    local path, headers = nil, { ["Host"] = "bench" }
    for part in string.gmatch(line, "[^|]+") do
      if not path then
        path = part
      else
        local k, v = string.match(part, "^([^:]+):%s*(.*)$")
        if k then headers[k] = v end
      end
    end
    list[#list + 1] = wrk.format("GET", path, headers)
  end
end

-- With KEYS=<n>: GET /item with `x-user: k-<i>`, i cycling through n distinct values.
local keys = tonumber(os.getenv("KEYS") or "")

local n = 0
request = function()
  if keys and keys > 0 then
    n = n + 1
    return wrk.format("GET", "/item", { ["Host"] = "bench", ["x-user"] = "k-" .. (n % keys) })
  end
  if #list == 0 then
    return wrk.format("GET", "/")
  end
  n = n + 1
  return list[(n % #list) + 1]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
