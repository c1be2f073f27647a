-- wrk script: POST /v1/tokens/{token}/detokenize for one token (each request is audited).
local key = os.getenv("VAULT_BENCH_KEY")
local token = os.getenv("VAULT_BENCH_TOKEN")
wrk.method = "POST"
wrk.path = "/v1/tokens/" .. token .. "/detokenize"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"purpose":"benchmark"}'
