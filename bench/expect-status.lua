-- wrk script: counts answers whose status is not EXPECT_STATUS (default 200) and prints the count.
-- With WRK_METHOD (and WRK_BODY, WRK_CONTENT_TYPE), every request uses that method and body;
-- WRK_HEADERS adds headers, one "Name: value" a line. With EXPECT_BODY, an answer of the expected
-- status whose body is not exactly that is counted too (unexpected_body): a wrong answer is no
-- answer.
local threads = {}

if os.getenv("WRK_METHOD") then
  wrk.method = os.getenv("WRK_METHOD")
  wrk.body = os.getenv("WRK_BODY") or ""
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/octet-stream"
end
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  unexpected = 0
  unexpected_body = 0
  expected = tonumber(os.getenv("EXPECT_STATUS") or "200")
  expected_body = os.getenv("EXPECT_BODY")
  if expected_body == "" then
    expected_body = nil
  end
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
  elseif expected_body and body ~= expected_body then
    unexpected_body = unexpected_body + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  local total_body = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
    total_body = total_body + thread:get("unexpected_body")
  end
  io.write(string.format("unexpected_status %d\n", total))
  io.write(string.format("unexpected_body %d\n", total_body))
end
