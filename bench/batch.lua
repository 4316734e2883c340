-- Batches of 100 events per request; every event is new.
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local counter = 0
request = function()
  local events = {}
  for i = 1, 100 do
    counter = counter + 1
    events[i] = string.format(
      '{"source":"sentinel","title":"drift %d-%d","severity":"medium","category":"model_drift","labels":{"model":"m%d"}}',
      tid, counter, counter % 50)
  end
  local body = "[" .. table.concat(events, ",") .. "]"
  return wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, body)
end
