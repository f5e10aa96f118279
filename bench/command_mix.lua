-- wrk script: a durable command mix on pre-opened accounts acc-0 .. acc-(N-1), or on the ids
-- listed one per line in the file KONTOR_BENCH_IDS names (when set).
--   45 % deposits, 40 % purchases, 10 % limit updates, 5 % address updates.
-- Every request is a write that is acknowledged only after fsync. Limits are large, so
-- purchases are accepted; non-2xx answers are reported by wrk and by the summary below.
local accounts = tonumber(os.getenv("KONTOR_BENCH_ACCOUNTS") or "1000")
local ids = nil
if os.getenv("KONTOR_BENCH_IDS") then
  ids = {}
  for line in io.lines(os.getenv("KONTOR_BENCH_IDS")) do
    if line ~= "" then table.insert(ids, line) end
  end
end
local thread_no = 0
local threads = {}

function setup(thread)
  thread_no = thread_no + 1
  thread:set("tid", thread_no)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tid * 7919)
  counter = 0
  json = { ["Content-Type"] = "application/json" }
end

function request()
  counter = counter + 1
  local acc = ids and ids[math.random(#ids)] or ("acc-" .. math.random(0, accounts - 1))
  local r = math.random(100)
  if r <= 45 then
    return wrk.format("POST", "/accounts/" .. acc .. "/transactions", json,
      string.format('{"txId":"w%d-%d-%d","kind":"deposit","amount":%d,"currency":"EUR"}',
        tid, counter, math.random(1e9), math.random(1, 500)))
  elseif r <= 85 then
    return wrk.format("POST", "/accounts/" .. acc .. "/transactions", json,
      string.format('{"txId":"w%d-%d-%d","kind":"purchase","amount":%d,"currency":"EUR"}',
        tid, counter, math.random(1e9), math.random(1, 500)))
  elseif r <= 95 then
    return wrk.format("PUT", "/accounts/" .. acc .. "/limit", json,
      string.format('{"limit":%d}', math.random(1e9, 2e9)))
  else
    return wrk.format("PUT", "/accounts/" .. acc .. "/address", json,
      '{"street":"Ring 1","city":"Wien","zip":"1010","country":"AT"}')
  end
end
