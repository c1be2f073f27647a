-- wrk script: POST /v1/tokens with the same PAN every time: the lookup-and-return path (still an
-- audited, durable write: the token.create event).
local key = os.getenv("VAULT_BENCH_KEY")
wrk.method = "POST"
wrk.path = "/v1/tokens"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"pan":"4242424242424242"}'
