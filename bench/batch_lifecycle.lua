-- Batches of 100 events in steady state: 50 new problems fire and 50 problems that fired
-- 20 requests earlier resolve, so every event opens or resolves an incident and about
-- 1,000 incidents per wrk thread stay open (alerts firing and clearing all day).
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local function event(k, status)
  return string.format(
    '{"source":"alertmanager","title":"p95 latency %d-%d","severity":"warning","category":"performance","labels":{"service":"s%d"},"status":"%s"}',
    tid, k, k % 50, status)
end

local n = 0
request = function()
  local events = {}
  for i = 0, 49 do
    local k = n * 50 + i
    events[#events + 1] = event(k, "firing")
    events[#events + 1] = event(k - 1000, "resolved")
  end
  n = n + 1
  local body = "[" .. table.concat(events, ",") .. "]"
  return wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, body)
end
