-- wrk script: POST /v1/tokens with a fresh random Luhn-valid 16-digit PAN per request, so every
-- request is a real insert (plus its audit event), not a lookup of an existing token.
local key = os.getenv("VAULT_BENCH_KEY")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))

local function luhn_complete(body)
  local sum = 0
  for i = #body, 1, -1 do
    local d = tonumber(body:sub(i, i))
    if (#body - i) % 2 == 0 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  return body .. tostring((10 - sum % 10) % 10)
end

request = function()
  local body = "4"
  for _ = 1, 14 do body = body .. tostring(math.random(0, 9)) end
  return wrk.format("POST", "/v1/tokens", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, '{"pan":"' .. luhn_complete(body) .. '"}')
end

-- Optional: with VAULT_BENCH_LIMIT set, each wrk thread stops after that many responses (the
-- growth benchmark fills the vault to an exact size this way).
local limit = tonumber(os.getenv("VAULT_BENCH_LIMIT") or "")
if limit then
  local done = 0
  response = function()
    done = done + 1
    if done >= limit then wrk.thread:stop() end
  end
end
