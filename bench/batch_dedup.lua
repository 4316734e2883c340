-- Batches of 100 events drawn from 1,000 recurring problems: after the first second
-- almost every event is deduplicated onto an open incident (an alert storm).
local counter = 0
request = function()
  local events = {}
  for i = 1, 100 do
    counter = counter + 1
    events[i] = string.format(
      '{"source":"alertmanager","title":"GPU memory pressure %d","severity":"warning","category":"infrastructure","labels":{"node":"n%d"}}',
      counter % 1000, counter % 1000)
  end
  local body = "[" .. table.concat(events, ",") .. "]"
  return wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, body)
end
