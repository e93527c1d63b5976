-- wrk script for bench/boot_storm.py: every request asks for PATH?mac=<the next MAC>, cycling
-- through COUNT node MACs (PREFIX:xx:xx:xx, index 0..COUNT-1, as the bench registered them),
-- and counts answers that are not a 200 containing EXPECT. At the end one line:
--   STORM {"requests": ..., "p50_us": ..., "p99_us": ..., "errors": socket errors and timeouts, "bad": wrong answers}
-- wrk -t1 -c50 -d10s -s bench/storm.lua http://127.0.0.1:PORT -- PATH PREFIX COUNT EXPECT

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path, prefix, count, expect = args[1], args[2], tonumber(args[3]), args[4]
  sent, bad = 0, 0
end

function request()
  local n = sent % count
  sent = sent + 1
  local mac = string.format("%s:%02x:%02x:%02x", prefix, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", path .. "?mac=" .. mac)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, expect, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total, sent_total = 0, 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
    sent_total = sent_total + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    'STORM {"requests": %d, "sent": %d, "seconds": %.3f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d,'
      .. ' "errors": %d, "bad": %d}\n',
    summary.requests, sent_total, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, bad_total))
end
