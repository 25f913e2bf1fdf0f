-- wrk script of the benchmark: one request shape per run, described by a Lua file that bench.py
-- generates into its temporary folder and names in BENCH_CONF. That file returns a table:
--   method, path, body (string or nil), content_type (or nil),
--   tokens  (list of "JWT" tokens, used round-robin; empty: no Authorization header),
--   unique_ids (true: a unique X-Atlassian-Webhook-Identifier per request), id_prefix.
-- done() prints one line "BENCH_JSON {...}" with exact counts and latency percentiles.

local conf = dofile(os.getenv("BENCH_CONF"))
local tokens = conf.tokens or {}
local ntokens = #tokens
local counter = 0
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
end

function init(args)
  tid = tid or 0
end

function request()
  counter = counter + 1
  local headers = {}
  if conf.content_type then
    headers["Content-Type"] = conf.content_type
  end
  if ntokens > 0 then
    headers["Authorization"] = "JWT " .. tokens[(counter + tid) % ntokens + 1]
  end
  if conf.unique_ids then
    headers["X-Atlassian-Webhook-Identifier"] = conf.id_prefix .. "-" .. tid .. "-" .. counter
  end
  return wrk.format(conf.method, conf.path, headers, conf.body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
