-- wrk script: counts answers whose status is not EXPECT_STATUS (default 200) and prints the count.
-- With WRK_METHOD (and WRK_BODY, WRK_CONTENT_TYPE), every request uses that method and body.
local threads = {}

if os.getenv("WRK_METHOD") then
  wrk.method = os.getenv("WRK_METHOD")
  wrk.body = os.getenv("WRK_BODY") or ""
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/octet-stream"
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  unexpected = 0
  expected = tonumber(os.getenv("EXPECT_STATUS") or "200")
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
  end
  io.write(string.format("unexpected_status %d\n", total))
end
