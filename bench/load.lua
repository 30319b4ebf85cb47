-- wrk script for the spendgate benchmark (driven by bench/run.py through env vars).
--
--   BENCH_KEY        bearer token sent as Authorization (the gateway key; the mock
--                    accepts any non-empty token)
--   BENCH_STREAM     "1" streaming bodies, "0" non-streaming, "mix" alternate both
--   BENCH_RUN        run id, part of every X-Workflow-Id (fresh workflows per run)
--   BENCH_WORKFLOWS  number of distinct X-Workflow-Id values to rotate through
--   BENCH_LIMIT      stop this thread after issuing this many requests (0 = no limit;
--                    -d still bounds the run)
--
-- Every request carries X-Workflow-Id, X-Workflow-Budget-Usd: 1000000 and
-- X-Workflow-Step. done() prints one machine-readable line starting with BENCH_JSON.

local key = os.getenv("BENCH_KEY") or "bench"
local mode = os.getenv("BENCH_STREAM") or "0"
local run = os.getenv("BENCH_RUN") or "run"
local workflows = tonumber(os.getenv("BENCH_WORKFLOWS") or "4")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local steps = 8

local cycle = {}
local issued = 0

local function body(stream)
   local text = '{"model":"gpt-4o","messages":['
      .. '{"role":"system","content":"You are a terse assistant."},'
      .. '{"role":"user","content":"Say hello to the benchmark in one short sentence."}'
      .. '],"max_tokens":64'
   if stream then
      return text .. ',"stream":true}'
   end
   return text .. "}"
end

function init(args)
   local host = wrk.host .. ":" .. tostring(wrk.port)
   for w = 1, workflows do
      for s = 1, steps do
         local stream = mode == "1" or (mode == "mix" and s % 2 == 0)
         local headers = {
            ["Host"] = host,
            ["Content-Type"] = "application/json",
            ["Authorization"] = "Bearer " .. key,
            ["X-Workflow-Id"] = "bench-" .. run .. "-wf" .. tostring(w),
            ["X-Workflow-Budget-Usd"] = "1000000",
            ["X-Workflow-Step"] = "step-" .. tostring(s),
         }
         cycle[#cycle + 1] = wrk.format("POST", wrk.path, headers, body(stream))
      end
   end
end

function request()
   issued = issued + 1
   if limit > 0 and issued >= limit then
      wrk.thread:stop()
   end
   return cycle[(issued - 1) % #cycle + 1]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
end
