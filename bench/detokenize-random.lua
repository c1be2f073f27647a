-- wrk script: POST /v1/tokens/{token}/detokenize, each request for a token drawn at random from
-- the file VAULT_BENCH_TOKENS (one per line), so lookups land all over the table as it grows.
local key = os.getenv("VAULT_BENCH_KEY")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local tokens = {}
for line in io.lines(os.getenv("VAULT_BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end

request = function()
  return wrk.format("POST", "/v1/tokens/" .. tokens[math.random(#tokens)] .. "/detokenize", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, '{"purpose":"benchmark"}')
end
