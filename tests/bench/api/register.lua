-- wrk script: POST /api/mailboxes with a unique address per request.
-- Reads the admin token and a user id range from the environment (KILN_BENCH_TOKEN,
-- KILN_BENCH_USER_FIRST, KILN_BENCH_USER_LAST): registrations spread over users, as real
-- ones do (each registration locks its user's row to enforce the plan's mailbox cap).
local counter = 0
local token = os.getenv("KILN_BENCH_TOKEN")
local first = tonumber(os.getenv("KILN_BENCH_USER_FIRST"))
local last = tonumber(os.getenv("KILN_BENCH_USER_LAST"))

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  n = 0
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local addr = string.format("reg-%d-%d@bench-reg.test", tid, n)
  local user = first + (n * 7 + tid * 131) % (last - first + 1)
  local body = string.format(
    '{"user_id":%s,"address":"%s","smtp":{"host":"smtp.bench-reg.test","port":587,' ..
    '"security":"starttls","password":"pw-%d"}}', user, addr, n)
  return wrk.format(nil, "/api/mailboxes", nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    errors = (errors or 0) + 1
  end
end
