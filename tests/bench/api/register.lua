-- wrk script: POST /api/mailboxes with a unique address per request.
-- Reads the admin token and user id from the environment (KILN_BENCH_TOKEN, KILN_BENCH_USER).
local counter = 0
local token = os.getenv("KILN_BENCH_TOKEN")
local user = os.getenv("KILN_BENCH_USER")

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
