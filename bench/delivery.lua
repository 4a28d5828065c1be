-- wrk script of bench/delivery.py: random slots, the bearer token, figures as JSON.
--
-- Read from the environment (bench/delivery.py sets them):
--   BENCH_MODE      live | bare | batch | visitor (live, naming a random visitor)
--   BENCH_TOKEN     the API key, sent as "Authorization: Bearer <key>" (bare ignores it)
--   BENCH_PROMPT    the prompt's slug
--   BENCH_PRODUCTS  number of products, SKUs BENCH_SKU_PREFIX .. %06d from 0
--   BENCH_SEGMENTS  number of segments, slugs BENCH_SEGMENT_PREFIX .. %02d from 0
--   BENCH_BATCH     products a batch request names
--   BENCH_SEED      random seed (each wrk thread adds its own number)
--   BENCH_LANGUAGES comma-separated tags; each request asks for one at random
--
-- Each request names a product and a segment drawn at random among all of them, so
-- every slot is as likely as any other and no cache of a few answers flatters us.
-- The bare view gets the same query string, built the same way.

local mode = os.getenv("BENCH_MODE") or "live"
local token = os.getenv("BENCH_TOKEN") or ""
local prompt = os.getenv("BENCH_PROMPT") or "bench-delivery"
local products = tonumber(os.getenv("BENCH_PRODUCTS") or "10000")
local segments = tonumber(os.getenv("BENCH_SEGMENTS") or "14")
local batch = tonumber(os.getenv("BENCH_BATCH") or "50")
local seed = tonumber(os.getenv("BENCH_SEED") or "1")
local sku_prefix = os.getenv("BENCH_SKU_PREFIX") or "BD-"
local segment_prefix = os.getenv("BENCH_SEGMENT_PREFIX") or "bd-"
local tags = {}
for tag in string.gmatch(os.getenv("BENCH_LANGUAGES") or "", "[^,]+") do
  tags[#tags + 1] = tag
end

local headers = { ["Authorization"] = "Bearer " .. token }
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  math.randomseed(seed * 1000 + (thread_number or 0))
end

local function sku()
  return string.format("%s%06d", sku_prefix, math.random(0, products - 1))
end

local function segment()
  return string.format("%s%02d", segment_prefix, math.random(0, segments - 1))
end

local function visitor()
  -- A new anonymous id nearly every request, as a stream of first visits: each answer
  -- picks an arm and signs an exposure id of its own.
  return string.format("&visitor=%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

local function language()
  if #tags == 0 then
    return ""
  end
  return "&language=" .. tags[math.random(1, #tags)]
end

function request()
  local path
  if mode == "batch" then
    local skus = {}
    for i = 1, batch do
      skus[i] = sku()
    end
    path = "/api/v1/live/batch/?prompt=" .. prompt .. "&segment=" .. segment()
      .. "&products=" .. table.concat(skus, ",") .. language()
  elseif mode == "bare" then
    path = "/bench/bare/?prompt=" .. prompt .. "&product=" .. sku() .. "&segment=" .. segment()
      .. language()
  else
    path = "/api/v1/live/?prompt=" .. prompt .. "&product=" .. sku() .. "&segment=" .. segment()
      .. language()
    if mode == "visitor" then
      path = path .. visitor()
    end
  end
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
