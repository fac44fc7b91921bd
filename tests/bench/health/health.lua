-- wrk script: GET /api/mailboxes/<random id>/health over the seeded 100,000 mailboxes
-- (KILN_BENCH_TOKEN, KILN_BENCH_FIRST, KILN_BENCH_LAST from the environment).
local token = os.getenv("KILN_BENCH_TOKEN")
local first = tonumber(os.getenv("KILN_BENCH_FIRST"))
local last = tonumber(os.getenv("KILN_BENCH_LAST"))

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  return wrk.format("GET", "/api/mailboxes/" .. math.random(first, last) .. "/health")
end
