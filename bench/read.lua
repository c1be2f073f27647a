-- wrk script: GET /v1/tokens/{token} (metadata; audited like every token access).
local key = os.getenv("VAULT_BENCH_KEY")
local token = os.getenv("VAULT_BENCH_TOKEN")
wrk.path = "/v1/tokens/" .. token
wrk.headers["Authorization"] = "Bearer " .. key
