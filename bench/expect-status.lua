-- wrk script: counts answers whose status is not EXPECT_STATUS (default 200) and prints the count.
local threads = {}

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
