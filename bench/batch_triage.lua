-- Batches of 100 new events with a realistic title and description. With
-- `wrk ... -- unclassified` the events name no severity and no category, so the offline
-- classifier decides both at ingest; otherwise they name both and it does not run.
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local classified = true
init = function(args)
  classified = args[1] ~= "unclassified"
end

local titles = {
  "p95 latency over SLO on the chat model",
  "GPU memory exhausted on inference node",
  "Jailbreak attempts against the assistant",
  "Embedding drift detected on the search index",
  "Token spend 3x over the daily budget",
  "Disk 97% full on the vector database",
  "Error rate 12% on the completion endpoint",
  "Nightly evaluation finished",
}
local descriptions = {
  "The 95th percentile latency is 2.4 s, above the 1.5 s objective for 10 minutes.",
  "CUDA out of memory errors; 3 pods restarted in the last 5 minutes.",
  "Shield blocked 140 prompts matching known jailbreak patterns from 12 accounts.",
  "Cosine distance between this week's and last week's embeddings rose to 0.31.",
  "Spend reached 1,530 USD by 14:00 against a 500 USD daily budget.",
  "The volume holding the index has 3% free space left and grows 1% an hour.",
  "5xx answers rose from 0.2% to 12% after the 13:05 deploy.",
  "All 412 evaluation cases ran; accuracy 91.3%, unchanged from yesterday.",
}

local counter = 0
request = function()
  local events = {}
  for i = 1, 100 do
    counter = counter + 1
    local k = counter % #titles + 1
    local fields = ""
    if classified then
      fields = '"severity":"medium","category":"performance",'
    end
    events[i] = string.format(
      '{"source":"sentinel",%s"title":"%s %d-%d","description":"%s","labels":{"model":"m%d"}}',
      fields, titles[k], tid, counter, descriptions[k], counter % 50)
  end
  local body = "[" .. table.concat(events, ",") .. "]"
  return wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, body)
end
