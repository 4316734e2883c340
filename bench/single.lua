-- One event per request; every event is new (worst case: an insert per event).
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"source":"sentinel","title":"p95 latency over SLO %d-%d","severity":"high","category":"performance","labels":{"model":"m%d","region":"eu"}}',
    tid, counter, counter % 50)
  return wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, body)
end
